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
WITH_CI = "with-ci"  # evaluate: bootstrap the site's AUROC CI of its test rows
# evaluate under DP: which split the message asks a release of ("validation" each round, "test"
# once per run for the round handed out: federation.core.privacy.planned_releases)
EVAL_SPLIT = "eval-split"
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
# The round of each training this run charged at the site (its ledger; a round trained twice is
# there twice): the server names the charges whose update never reached the model
CHARGED_ROUNDS = "charged-rounds"
# Every evaluate/compare/personalize reply: the noise std of its release (0: exact, DP off) and
# the ε of that release alone at the site's δ (client/dp_release.py)
RELEASE_NOISE_STD = "release-noise-std"
RELEASE_EPSILON = "release-epsilon"

# Query asked before a secure-aggregation round: will the site train? (message type query.budget)
QUERY_BUDGET = "budget"
# Query of a resumed run before its first round: what the site's ledger charged this run so far
# (message type query.charges): the stopped attempt's in-flight round may have been paid for
QUERY_CHARGES = "charges"
# Error codes of a site's refusals (Flower's own codes are < 100); the reason is a category
# (client.site_errors), never a value from the site's data.
BUDGET_REFUSED = 4001  # past the site's ε cap, or a run its privacy policy does not allow
SPEC_MISMATCH = 4002  # the run's dataset spec is not the site's
DATA_CHECK_FAILED = 4003  # the site's file fails its spec's checks
EVALUATION_REFUSED = 4004  # the test split is too small to release metrics
RUN_CONFIG_REFUSED = 4005  # the run config is invalid
SITE_CONFIG_ERROR = 4006  # the node's own configuration is incomplete or wrong
UNMASK_REFUSED = 4008  # a SecAgg+ unmask request the site will not answer (client/secure_aggregation.py)
APP_NOT_PINNED = 4007  # the run's app bundle is not the ClientApp this site pins (client/pinned_runner.py)
UNCHARGED_RELEASE = 4009  # a reply held a statistic no ledger row charged (client/dp_release.py)
SITE_ERROR = 4099  # anything else (details in the site's log)

# Evaluate metrics
EVAL_LOSS = "eval-loss"
AUROC = "auroc"
AUPRC = "auprc"
BRIER = "brier"
N_TEST = "n-test"
N_POSITIVE = "n-positive"
SCORE_HIST_POS = "score-hist-pos"
SCORE_HIST_NEG = "score-hist-neg"
# The same evaluate metrics of the site's validation rows carry this prefix ("val-auroc");
# absent when the validation part is under the site's min-eval-rows / min-cell-size.
VALIDATION_PREFIX = "val-"
# Modeler metrics each site computes on its own test rows (federation.core.metrics)
AUROC_CI_LOW = "auroc-ci-low"
AUROC_CI_HIGH = "auroc-ci-high"
ECE = "ece"
CALIBRATION_SLOPE = "calibration-slope"
CALIBRATION_INTERCEPT = "calibration-intercept"
THRESHOLD = "threshold"
SENSITIVITY = "sensitivity"
SPECIFICITY = "specificity"

# Under DP: standard errors of a split's loss and AUROC over the release's noise and sampling
# (parametric bootstrap of the noisy histograms at the site: federation.core.histogram_metrics)
EVAL_LOSS_SE = "eval-loss-se"
AUROC_SE = "auroc-se"

# Feature-statistics query (federated standardization)
STATS_COUNT = "stats-count"
STATS_SUM = "stats-sum"
STATS_SUMSQ = "stats-sumsq"
QUERY_FEATURE_STATS = "feature-stats"
QUERY_KIND = "query-kind"

# Compare (champion vs challenger on each site's test rows: client/comparison.py)
QUERY_COMPARE = "compare"  # the query's action: message type "query.compare"
CHAMPION_ARRAYS = "champion-arrays"
CHALLENGER_ARRAYS = "challenger-arrays"
# In the query's ConfigRecord: each model's training-run identity and model spec (JSON)
CHAMPION_RUN = "champion-run"
CHALLENGER_RUN = "challenger-run"
CHAMPION_MODEL_SPEC = "champion-model-spec"
CHALLENGER_MODEL_SPEC = "challenger-model-spec"
# In the reply: each model's metrics under its prefix ("champion-auroc", "challenger-ece", ...)
CHAMPION_PREFIX = "champion-"
CHALLENGER_PREFIX = "challenger-"
AUROC_DIFFERENCE = "auroc-difference"  # challenger - champion, on the same rows
DIFFERENCE_CI_LOW = "difference-ci-low"  # paired percentile bootstrap, the site's own resamples
DIFFERENCE_CI_HIGH = "difference-ci-high"

# Personalization (client.personalize, server.personalization): after the federation, one
# query (message type query.personalize) carries the selected global model; a site that trained
# replies with test-split metrics of the global and of its personalized model under these
# prefixes ("global-auroc", "personalized-auroc"), and, for finetune, its ε.
QUERY_PERSONALIZE = "personalize"
PERSONALIZE_MODE = "personalize-mode"  # ConfigRecord: recalibrate | finetune
GLOBAL_PREFIX = "global-"
PERSONALIZED_PREFIX = "personalized-"
PERSONALIZE_METRICS = (
    "auroc",
    "auroc-ci-low",
    "auroc-ci-high",
    "calibration-slope",
    "calibration-intercept",
    "brier",
)
# Drift (lhsfed drift: message type query.drift; client/drift.py, server/drift.py)
QUERY_DRIFT = "drift"
DRIFT_RUN = "drift-run"  # config: the run identity whose reference the site compares with
# Reply metrics: one value per feature of the run's spec, in its order; withheld = 1: no score
DRIFT_SMD = "drift-smd"
DRIFT_MISSING_CHANGE = "drift-missing-change"
DRIFT_PSI = "drift-psi"
DRIFT_WITHHELD = "drift-withheld"
# Subgroups (issue N.1): a site whose spec marks subgroup features adds, for each released
# level, "subgroup/FEATURE=LEVEL/METRIC" (METRIC: n, n-positive, mean-risk, auroc, citl,
# calibration-slope, tpr, fpr, each metric's -ci-low/-ci-high, score-hist-pos/-neg) and per
# feature "subgroup-gap/FEATURE/GAP" (auroc-gap, citl-gap, slope-gap, tpr-gap, fpr-gap,
# equalized-odds-difference, each with -ci-low/-ci-high). Absent: no subgroup in the spec.
# Under DP (client.subgroup_release) the test release's reply carries, for EVERY level of the
# spec, only its noisy "subgroup/FEATURE=LEVEL/score-hist-pos/-neg", with the release's noise
# std per coarse bin and its ε; the coordinator computes the metrics from them
# (federation.core.subgroup_histograms).
SUBGROUP_PREFIX = "subgroup/"
SUBGROUP_GAP_PREFIX = "subgroup-gap/"
SUBGROUP_NOISE_STD = "subgroup-noise-std"
SUBGROUP_RELEASE_EPSILON = "subgroup-release-epsilon"
# model=glm (federation.core.glm, DP off only): one Newton round is message type "train.glm".
# The message carries the model's arrays (its preprocessing buffers) and GLM_COEFFICIENTS (an
# ArrayRecord: one row of [intercept, weights] per λ); the reply, the site's exact sums over its
# training rows per λ, flattened row-major, and its validation rows' log-loss sums per λ (with
# their count under VALIDATION_PREFIX + N_TEST; absent when that split is too small to release).
GLM_ACTION = "glm"
GLM_COEFFICIENTS = "glm-coefficients"
GLM_GRADIENT = "glm-gradient"
GLM_HESSIAN = "glm-hessian"
GLM_LOSS = "glm-loss"
GLM_VALIDATION_LOSS = "glm-val-loss"
