"""The bad-input corpus: (id, lhsfed argv, text stderr's last line must hold).

``{d}`` is the corpus folder built by ``tests.helpers.bad_inputs_files.build_corpus``. Every case must
exit 2 with one clear line, print no traceback and change no file under ``{d}``.
"""

from __future__ import annotations

PREDICT = ["predict", "{d}/onnx/model.onnx", "--out", "{d}/scored.csv", "--data"]


def _predict(data: str, *extra: str) -> list[str]:
    return [*PREDICT, data, *extra]


def _card(folder: str, model: str = "model.onnx") -> list[str]:
    return ["predict", f"{{d}}/{folder}/{model}", "--data", "{d}/patients.csv", "--out", "{d}/scored.csv"]


MODEL_AND_CARD = [
    ("garbage-onnx", _card("garbage_onnx"), "cannot be loaded as an ONNX model"),
    ("garbage-torchscript", _card("garbage_ts", "model.pt"), "cannot be loaded as a TorchScript model"),
    ("card-without-input-keys", _card("card_no_input"), "key input.columns is missing or empty"),
    ("card-a-json-list", _card("card_list"), "not a model card (a JSON object"),
    ("card-not-json", _card("card_not_json"), "not a valid model card"),
    ("card-binary", _card("card_binary"), "not a valid model card"),
    ("card-without-sha256", _card("card_no_sha"), "key model.sha256 is missing"),
    ("card-unknown-format", _card("card_format"), "key model.format must be one of"),
    ("model-not-the-cards", _card("swapped"), "not the model the card describes"),
    ("missing-model-no-card", _card("nowhere"), "nowhere/model.onnx: model file not found"),
    ("missing-card", _card("no_card"), "model_card.json: model card not found"),
    (
        "model-is-a-directory",
        [*_card("onnx")[:1], "{d}/folder", *_card("onnx")[2:], "--card", "{d}/onnx/model_card.json"],
        "folder: is a directory, not a model file",
    ),
    (
        "card-is-a-directory",
        [*_card("onnx"), "--card", "{d}/folder"],
        "folder: is a directory, not a model card",
    ),
    (
        "torchscript-with-the-onnx-card",
        [*_card("ts", "model.pt"), "--card", "{d}/onnx/model_card.json"],
        "not the model the card describes",
    ),
]

PATIENTS = [
    ("data-is-a-directory", _predict("{d}/folder"), "folder: is a directory, not a CSV of patients"),
    ("data-missing", _predict("{d}/nowhere.csv"), "nowhere.csv: CSV of patients not found"),
    ("duplicated-column", _predict("{d}/dup.csv"), "column 'age' appears twice (columns 2 and 15)"),
    ("nan-text", _predict("{d}/nan.csv"), "column 'age' row 2 has non-finite value 'NaN'"),
    ("inf", _predict("{d}/inf.csv"), "column 'chol' row 2 has non-finite value 'inf'"),
    ("minus-inf", _predict("{d}/neg_inf.csv"), "column 'oldpeak' row 2 has non-finite value '-inf'"),
    ("overflows-float64", _predict("{d}/e309.csv"), "column 'age' row 2 has non-finite value '1e309'"),
    ("overflows-float32", _predict("{d}/e39.csv"), "column 'thalach' row 2 has non-finite value '1e39'"),
    ("non-numeric", _predict("{d}/text.csv"), "column 'age' row 2 has non-numeric value 'abc'"),
    ("missing-column", _predict("{d}/no_chol.csv"), "column 'chol' is missing"),
    ("empty-file", _predict("{d}/empty.csv"), "cannot be read as CSV"),
    ("header-only", _predict("{d}/header_only.csv"), "has a header row but no patients to score"),
    ("binary-file", _predict("{d}/binary.csv"), "cannot be read as CSV text"),
    (
        "strict-out-of-range",
        _predict("{d}/age430.csv", "--strict"),
        "row 2: age 430 not in range 18..100 years; --strict refuses",
    ),
    ("strict-unknown-level", _predict("{d}/cp9.csv", "--strict"), "row 2: cp 9 not in levels [1, 2, 3, 4]"),
    ("strict-binary-level", _predict("{d}/sex2.csv", "--strict"), "row 2: sex 2 not in levels [0, 1]"),
    ("no-data-option", PREDICT[:-1], "the following arguments are required: --data"),
]

OUTPUT = [
    (
        "out-is-data",
        [*_predict("{d}/patients.csv")[:2], "--out", "{d}/patients.csv", "--data", "{d}/patients.csv"],
        "is the same file as --data",
    ),
    (
        "out-is-data-by-symlink",
        [*PREDICT[:2], "--out", "{d}/link.csv", "--data", "{d}/patients.csv"],
        "is the same file as --data",
    ),
    (
        "out-is-data-by-relative-path",
        [*PREDICT[:2], "--out", "{d}/folder/../patients.csv", "--data", "{d}/patients.csv"],
        "is the same file as --data",
    ),
    (
        "out-is-data-by-hard-link",
        [*PREDICT[:2], "--out", "{d}/hard.csv", "--data", "{d}/patients.csv"],
        "is the same file as --data",
    ),
    (
        "out-is-the-model",
        [*PREDICT[:2], "--out", "{d}/onnx/model.onnx", "--data", "{d}/patients.csv"],
        "is the same file as the model",
    ),
    (
        "out-is-a-directory",
        [*PREDICT[:2], "--out", "{d}/folder", "--data", "{d}/patients.csv"],
        "folder: is a directory; give the file to write",
    ),
]

EVALUATE = [
    ("threshold-7", ["evaluate", "{d}/run", "--threshold", "7"], "--threshold: must be in (0, 1)"),
    ("threshold-0", ["evaluate", "{d}/run", "--threshold", "0"], "--threshold: must be in (0, 1)"),
    ("threshold-1", ["evaluate", "{d}/run", "--threshold", "1"], "--threshold: must be in (0, 1)"),
    ("threshold-nan", ["evaluate", "{d}/run", "--threshold", "nan"], "--threshold: must be in (0, 1)"),
    ("threshold-text", ["evaluate", "{d}/run", "--threshold", "high"], "'high' is not a number"),
    ("bootstrap-0", ["evaluate", "{d}/run", "--bootstrap", "0"], "--bootstrap: must be at least 1"),
    ("evaluate-not-a-run", ["evaluate", "{d}/not_a_run"], "not a finished run folder (no model.pt)"),
    ("evaluate-a-file", ["evaluate", "{d}/patients.csv"], "not a finished run folder (no model.pt)"),
    ("evaluate-missing-round", ["evaluate", "{d}/run", "--round", "9"], "no checkpoint for round 9"),
    ("evaluate-round-text", ["evaluate", "{d}/run", "--round", "last"], "invalid int value: 'last'"),
    ("evaluate-crafted-model", ["evaluate", "{d}/run_bad_model"], "cannot be read safely as plain weights"),
    (
        "evaluate-random-bytes-model",
        ["evaluate", "{d}/run_random_model"],
        "run_random_model/model.pt: cannot be read safely as plain weights (not a file torch.save wrote",
    ),
    (
        "export-random-bytes-model",
        ["export", "{d}/run_random_model", "--out", "{d}/new_export"],
        "run_random_model/model.pt: cannot be read safely as plain weights",
    ),
    (
        "evaluate-data-dir-missing",
        ["evaluate", "{d}/run", "--data-dir", "{d}/nowhere"],
        "nowhere/processed.cleveland.data: data file not found",
    ),
    (
        "evaluate-data-dir-a-file",
        ["evaluate", "{d}/run", "--data-dir", "{d}/patients.csv"],
        "--data-dir {d}/patients.csv: is a file, not a folder",
    ),
    (
        "evaluate-baselines-from-rounds",
        ["evaluate", "{d}/run", "--from-rounds", "--baselines"],
        "--baselines trains on every site's rows",
    ),
]

AUDIT_AND_EXPORT = [
    ("audit-shadows-0", ["audit", "{d}/run", "--shadows", "0"], "--shadows: must be at least 1 (got 0)"),
    (
        "audit-shadows-minus-3",
        ["audit", "{d}/run", "--shadows", "-3"],
        "--shadows: must be at least 1 (got -3)",
    ),
    (
        "audit-data-dir-missing",
        ["audit", "{d}/run", "--data-dir", "{d}/nowhere"],
        "nowhere/processed.cleveland.data: data file not found",
    ),
    (
        "audit-data-dir-a-file",
        ["audit", "{d}/run", "--data-dir", "{d}/patients.csv"],
        "--data-dir {d}/patients.csv: is a file, not a folder",
    ),
    ("audit-not-a-run", ["audit", "{d}/not_a_run"], "not a run folder of lhsfed-train"),
    ("audit-run-without-model", ["audit", "{d}/run_no_model"], "the run has not finished a round"),
    ("export-over-the-run", ["export", "{d}/run", "--out", "{d}/run"], "would overwrite the run's model.pt"),
    ("export-out-a-file", ["export", "{d}/run", "--out", "{d}/patients.csv"], "is a file, not a folder"),
    ("export-unknown-format", ["export", "{d}/run", "--format", "pickle"], "invalid choice: 'pickle'"),
    ("export-missing-round", ["export", "{d}/run", "--round", "9"], "no checkpoint for round 9"),
    ("export-not-a-run", ["export", "{d}/not_a_run"], "not a finished run folder (no model.pt)"),
]

REGISTER = ["pki", "register", "site", "--superlink", "127.0.0.1:9", "--ca-cert", "{d}/ca/ca.pem"]
PKI = [
    ("node-key-out-a-file", ["pki", "node-key", "x", "--out", "{d}/patients.csv"], "is a file, not a folder"),
    (
        "node-key-exists",
        ["pki", "node-key", "site", "--out", "{d}/keys"],
        "site.key already exists; move it away",
    ),
    (
        "node-key-path-name",
        ["pki", "node-key", "../evil", "--out", "{d}/keys"],
        "'../evil' is not a valid name",
    ),
    ("register-random-bytes", [*REGISTER, "{d}/keys/random.pub"], "not an OpenSSH public key"),
    ("register-private-key", [*REGISTER, "{d}/keys/site.key"], "is a PRIVATE key, which must never leave"),
    (
        "register-signing-key",
        [*REGISTER, "{d}/keys/publisher.sign.pub"],
        "node keys must be NIST-curve EC keys",
    ),
    ("register-missing-key", [*REGISTER, "{d}/keys/nowhere.pub"], "public key file not found"),
    ("register-a-directory", [*REGISTER, "{d}/keys"], "is a directory, not a public key file"),
    ("init-out-a-file", ["pki", "init", "--out", "{d}/patients.csv"], "is a file, not a folder"),
    ("init-over-a-ca", ["pki", "init", "--out", "{d}/ca"], "ca.key already exists"),
    (
        "server-cert-no-ca",
        ["pki", "server-cert", "--host", "h", "--ca-dir", "{d}/not_a_run"],
        "CA files not found",
    ),
    (
        "server-cert-garbage-ca",
        ["pki", "server-cert", "--host", "h", "--ca-dir", "{d}/bad_ca"],
        "are not the CA's PEM key and certificate",
    ),
    (
        "signing-key-exists",
        ["pki", "signing-key", "publisher", "--out", "{d}/keys"],
        "publisher.sign.key already exists",
    ),
    (
        "sign-app-random-key",
        ["pki", "sign-app", "--key", "{d}/keys/random.pub", "--out", "{d}/signed"],
        "not an OpenSSH private key",
    ),
    (
        "sign-app-node-key",
        ["pki", "sign-app", "--key", "{d}/keys/site.key", "--out", "{d}/signed"],
        "app-signing keys must be Ed25519",
    ),
    (
        "sign-app-missing-key",
        ["pki", "sign-app", "--key", "{d}/keys/nowhere", "--out", "{d}/signed"],
        "signing key not found",
    ),
    (
        "sign-app-out-a-file",
        ["pki", "sign-app", "--key", "{d}/keys/publisher.sign.key", "--out", "{d}/patients.csv"],
        "is a file, not a folder",
    ),
    (
        "trusted-entities-node-key",
        ["pki", "trusted-entities", "{d}/keys/site.pub", "--out", "{d}/t.yaml"],
        "must be ssh-ed25519 public keys",
    ),
    (
        "trusted-entities-random-bytes",
        ["pki", "trusted-entities", "{d}/keys/random.pub", "--out", "{d}/t.yaml"],
        "must be ssh-ed25519 public keys",
    ),
    (
        "sign-app-not-an-app",
        [
            "pki",
            "sign-app",
            "--app",
            "{d}/folder",
            "--key",
            "{d}/keys/publisher.sign.key",
            "--out",
            "{d}/signed",
        ],
        "not a Flower app folder (no pyproject.toml)",
    ),
    (
        "trusted-entities-missing",
        ["pki", "trusted-entities", "{d}/keys/nowhere", "--out", "{d}/t.yaml"],
        "signing public key not found",
    ),
    (
        "trusted-entities-over-its-key",
        ["pki", "trusted-entities", "{d}/keys/publisher.sign.pub", "--out", "{d}/keys/publisher.sign.pub"],
        "is the same file as public key 1",
    ),
]

SYNTH = ["synth", "--sites", "2", "--rows", "600", "--out"]
OTHER = [
    (
        "synth-negative-rows",
        ["synth", "--sites", "2", "--rows", "-5", "--out", "{d}/new"],
        "lhsfed synth: error: -5 rows cannot give 2 sites",
    ),  # the prefix once
    (
        "synth-one-site",
        ["synth", "--sites", "1", "--rows", "600", "--out", "{d}/new"],
        "--sites must be at least 2 (got 1)",
    ),
    ("synth-heterogeneity", [*SYNTH, "{d}/new", "--heterogeneity", "2"], "--heterogeneity must be in [0, 1]"),
    ("synth-out-a-file", [*SYNTH, "{d}/patients.csv"], "is a file, not a folder"),
    (
        "synth-over-an-earlier-one",
        [*SYNTH, "{d}/synth_done"],
        "already exists; give an empty folder, or --force",
    ),
    (
        "synth-a-million-site-files",
        ["synth", "--sites", "1000000", "--rows", "100000000", "--out", "{d}/new"],
        "--sites 1000000 would write 1000000 files into {d}/new, more than 10000",
    ),
    (
        "synth-more-than-the-disk",
        ["synth", "--sites", "2", "--rows", "10000000000000", "--out", "{d}/new"],
        "10000000000000 rows need about 291.0 TB and the disk has",
    ),
    (
        "synth-rows-text",
        ["synth", "--sites", "2", "--rows", "many", "--out", "{d}/new"],
        "invalid int value: 'many'",
    ),
    (
        "site-check-unknown-dataset",
        ["site", "check", "--dataset", "nope", "--data", "{d}/patients.csv"],
        "dataset 'nope' is unknown",
    ),
    ("site-check-no-file", ["site", "check"], "give --data PATH"),
    (
        "site-check-spec-not-a-mapping",
        ["site", "check", "--spec", "{d}/patients.csv", "--data", "{d}/patients.csv"],
        "must be a mapping of keys",
    ),
    ("nodes-without-the-ca", ["nodes", "--ca-cert", "{d}/nowhere.pem"], "CA certificate not found"),
    ("unknown-command", ["nonsense"], "invalid choice: 'nonsense'"),
    ("no-command", [], "the following arguments are required: command"),
]

CASES = [*MODEL_AND_CARD, *PATIENTS, *OUTPUT, *EVALUATE, *AUDIT_AND_EXPORT, *PKI, *OTHER]

# ``lhsfed site check`` on a file that fails: exit 1 (README: 0 pass, 1 fail, 2 a usage error),
# the report on stdout and the verdict as stderr's one line. (id, argv, verdict must hold)
CHECK = ["site", "check", "--spec"]
SITE_CHECK_CASES = [
    (
        "check-appended-to-itself",
        [*CHECK, "{d}/synth_parquet.yaml", "--data", "{d}/appended.parquet"],
        "first: column 'patient_id' row 81: repeats the patient ID of row 1 (80 rows repeat",
    ),
    (
        "check-repeated-patient-id",
        [*CHECK, "{d}/synth_parquet.yaml", "--data", "{d}/repeated_id.parquet"],
        "row 41: repeats the patient ID of row 6 (1 row repeats an earlier ID)",
    ),
    (
        "check-semicolons",
        [*CHECK, "{d}/synth_csv.yaml", "--data", "{d}/semicolon.csv"],
        "first: the file is separated by ';', not by commas",
    ),
    (
        "check-no-header-row",
        [*CHECK, "{d}/synth_csv.yaml", "--data", "{d}/headerless.csv"],
        "the file has no header row; export it with its header row",
    ),
    (
        "check-short-and-long-rows",
        [*CHECK, "{d}/synth_csv.yaml", "--data", "{d}/short_rows.csv"],
        "(2 failures, 0 warnings); first: row 3 column 'readmitted_30d': is missing",
    ),
]
# Every problem of a file in one pass: (case id, the failure lines' texts, in order).
SITE_CHECK_ALL = {
    "check-appended-to-itself": ["repeats the patient ID of row 1", "row 81: repeats row 1 exactly"],
    "check-short-and-long-rows": [
        "row 3 column 'readmitted_30d': is missing",
        "row 9 column 30: 30 fields, more than the header's 29",
    ],
}
# One through the real console script, to show it behaves as main() in-process does (a
# start costs ~5 s of imports: the rest run in-process).
SUBPROCESS_IDS = ("nan-text",)
# lhsfed-train config errors that already give one line (each start costs ~10 s: keep few).
LAUNCHER_CASES = [
    (
        "launcher-negative-epsilon",
        ["privacy.target_epsilon=-1"],
        "privacy.target_epsilon must be > 0 (got -1.0)",
    ),
    (  # Flower waited forever for 10 of the 4 simulated sites
        "launcher-min-train-nodes-above-the-sites",
        ["strategy.min_train_nodes=10"],
        "strategy.min_train_nodes=10: the simulated nodes are 4, so no round could ever start",
    ),
]
