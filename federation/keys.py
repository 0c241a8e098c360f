"""Keys of records and metrics on the wire (kebab-case, as Flower's own keys are).

Client and server both import these names: a key changed here changes on both sides.
"""

# RecordDict entries
ARRAYS = "arrays"
CONFIG = "config"
METRICS = "metrics"
SITE = "site"

# ConfigRecord keys
SERVER_ROUND = "server-round"
SITE_NAME = "site-name"
PROXIMAL_MU = "proximal-mu"

# Train metrics
NUM_EXAMPLES = "num-examples"
TRAIN_LOSS = "train-loss"
EPSILON = "epsilon"
DELTA = "delta"
STEPS = "steps"
NOISE_MULTIPLIER = "noise-multiplier"
SAMPLE_RATE = "sample-rate"

# Evaluate metrics
EVAL_LOSS = "eval-loss"
AUROC = "auroc"
AUPRC = "auprc"
BRIER = "brier"
N_TEST = "n-test"
N_POSITIVE = "n-positive"
SCORE_HIST_POS = "score-hist-pos"
SCORE_HIST_NEG = "score-hist-neg"
# Modeler metrics each site computes on its own test rows (federation.evaluation)
AUROC_CI_LOW = "auroc-ci-low"
AUROC_CI_HIGH = "auroc-ci-high"
ECE = "ece"
CALIBRATION_SLOPE = "calibration-slope"
CALIBRATION_INTERCEPT = "calibration-intercept"
THRESHOLD = "threshold"
SENSITIVITY = "sensitivity"
SPECIFICITY = "specificity"

# Feature-statistics query (federated standardization)
STATS_COUNT = "stats-count"
STATS_SUM = "stats-sum"
STATS_SUMSQ = "stats-sumsq"
QUERY_FEATURE_STATS = "feature-stats"
QUERY_KIND = "query-kind"
