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
WITH_CI = "with-ci"  # evaluate: bootstrap the site's AUROC CI (the run's last round only)
ARRAY_NAMES = "array-names"  # SecAgg+ (legacy layout) sends arrays unnamed: their names, joined by ","

# Train metrics
NUM_EXAMPLES = "num-examples"
TRAIN_LOSS = "train-loss"
EPSILON = "epsilon"
DELTA = "delta"
STEPS = "steps"
NOISE_MULTIPLIER = "noise-multiplier"
SAMPLE_RATE = "sample-rate"
SITE_EPSILON = "site-epsilon"  # ε of every run this site joined (its ledger), at the site's δ

# Query asked before a secure-aggregation round: will the site train? (message type query.budget)
QUERY_BUDGET = "budget"
# Error code of a site's refusal to train past its own ε cap (Flower's codes are < 100)
BUDGET_REFUSED = 4001

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
