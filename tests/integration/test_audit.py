"""``lhsfed audit``: membership-inference attacks against a run's global model."""

from __future__ import annotations

import numpy as np
import pytest

from federation.cli.main import main
from federation.coordinator.flwr_app_config import default_run_config
from federation.core.data import embedded_dir
from federation.core.settings import RunSettings
from federation.modeler.audit.attacks import attack_metrics, lira_offline_scores
from tests.helpers.runs import read_json, run_launcher

# The non-private run of docs/privacy.md: small sites, many epochs, so the model memorises.
# Built to leak (an attack must find it): a wide MLP with Adam trained far past fitting.
NON_PRIVATE = (
    "privacy=off",
    "model=mlp",
    "train.optimizer=adam",
    "train.batch_size=16",
    "model.hidden=256",
    "train.lr=0.03",
    "train.local_epochs=100",
    "rounds=5",
)
SMALL_SITE_ROWS = 60  # every site keeps its first 60 records: 33 train, 9 validation, 18 test
SHADOWS = "8"
EMBEDDED = embedded_dir(RunSettings.from_run_config(default_run_config()).data)


def test_attack_metrics_tell_perfect_from_chance():
    rng = np.random.default_rng(0)
    perfect = attack_metrics(np.linspace(1, 2, 50), np.linspace(-2, -1, 50))
    chance = attack_metrics(rng.normal(size=2000), rng.normal(size=2000))

    assert perfect["auc"] == 1.0 and perfect["tpr_at_1pct_fpr"] == 1.0
    assert abs(chance["auc"] - 0.5) < 0.03 and chance["tpr_at_1pct_fpr"] < 0.05
    low, high = chance["auc_ci95"]
    assert low < 0.5 < high


def test_lira_flags_records_the_target_is_unusually_confident_on():
    rng = np.random.default_rng(1)
    difficulty = rng.normal(0, 3, size=400)  # per-record confidence a model gets without it
    shadow = difficulty + rng.normal(0, 0.3, size=(8, 400))
    shadow_in = np.zeros((8, 400), dtype=bool)
    member = np.arange(400) < 200
    target = difficulty + np.where(member, 0.6, 0.0) + rng.normal(0, 0.3, size=400)

    scores = lira_offline_scores(target, shadow, shadow_in)

    assert attack_metrics(scores[member], scores[~member])["auc"] > 0.85
    assert attack_metrics(target[member], target[~member])["auc"] < 0.65  # raw confidence is weak


def test_audit_of_a_folder_that_is_no_run_is_one_clear_line(tmp_path, capsys):
    assert main(["audit", str(tmp_path)]) == 2
    assert "is not a run folder of lhsfed-train" in capsys.readouterr().err


def small_sites(folder):
    """The embedded UCI files cut to their first SMALL_SITE_ROWS records."""
    folder.mkdir()
    for source in EMBEDDED.glob("processed.*.data"):
        lines = source.read_text().splitlines(keepends=True)[:SMALL_SITE_ROWS]
        (folder / source.name).write_text("".join(lines))
    return folder


@pytest.fixture(scope="module")
def non_private_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("non_private")
    data = small_sites(tmp / "small_sites")
    # Hungary's first records are all negative: it sits out the training (the audit still
    # attacks its records), which the launcher accepts only when told so
    proc = run_launcher(
        tmp,
        *NON_PRIVATE,
        f"federation.data_dir={data}",
        "federation.runtime=inprocess",
        "allow_absent_sites=true",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return tmp / "run"


@pytest.mark.slow
def test_audit_finds_membership_leak_without_dp(non_private_run):
    assert main(["audit", str(non_private_run), "--shadows", SHADOWS]) == 0

    report = read_json(non_private_run / "audit.json")
    loss, lira = report["attacks"]["loss_threshold"], report["attacks"]["lira_offline"]
    assert report["privacy"]["enabled"] is False
    assert loss["all_sites"]["auc"] >= 0.58 and loss["all_sites"]["auc_ci95"][0] > 0.5
    assert max(loss[site]["auc"] for site in loss) >= 0.65  # one small site leaks clearly
    assert lira["all_sites"]["auc"] > 0.55


@pytest.mark.slow
def test_audit_finds_no_leak_at_epsilon_one(eps1_runs):
    assert main(["audit", str(eps1_runs.first), "--shadows", SHADOWS]) == 0

    report = read_json(eps1_runs.first / "audit.json")
    assert report["privacy"]["target_epsilon"] == 1.0
    for attack in ("loss_threshold", "lira_offline"):
        assert report["attacks"][attack]["all_sites"]["auc"] <= 0.55
        assert set(report["attacks"][attack]) == {"cleveland", "hungary", "switzerland", "va", "all_sites"}
