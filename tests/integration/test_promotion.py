"""Act: ``lhsfed promote`` applies the rule to a comparison; ``lhsfed predict registry:...``.

The shared runs (``nodp_run`` then ``dp_run``) are logged as campaigns 1 and 2 into a SQLite
registry under tmp_path (version 1 champion, version 2 challenger). Comparisons here are
written as ``lhsfed compare`` writes them, with the numbers each case needs: the rule is what
is under test (the federated comparison itself is tested in test_comparison*.py and the
end-to-end learning-loop test).
"""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest

from federation.cli.main import main as lhsfed
from federation.coordinator.promotion import PromotionRule, judge
from federation.coordinator.registry import log_campaign
from federation.modeler.run_loader import load_settings

TASK = "uci_heart-num"


def _client(uri: str):
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def _comparison(pooled: float | None, cis: dict[str, tuple[float, float]], challenger="2", champion="1"):
    return {
        "task": TASK,
        "champion": {"version": champion, "source": f"registry:{TASK}@champion"},
        "challenger": {"version": challenger, "source": f"registry:{TASK}@challenger"},
        "sites": {
            site: {"n_test": 60, "auroc_difference": (lo + hi) / 2, "difference_ci": [lo, hi]}
            for site, (lo, hi) in cis.items()
        },
        "refused": {},
        "pooled": {
            "champion_auroc": 0.8,
            "challenger_auroc": None,
            "auroc_difference": pooled,
            "auroc_difference_ci": None if pooled is None else [pooled - 0.03, pooled + 0.03],
            "threshold": 0.5,
            "measures": {  # calibration and net benefit unchanged: the AUROC parts decide
                name: {
                    "champion": 0.05,
                    "challenger": 0.05,
                    "difference": 0.0,
                    "difference_ci": [-0.01, 0.01],
                }
                for name in ("ece", "net_benefit")
            },
        },
    }


def _write(folder: Path, comparison: dict) -> Path:
    path = folder / "comparison.json"
    path.write_text(json.dumps(comparison))
    return path


@pytest.fixture(scope="module")
def logged_registry(nodp_run, dp_run, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("promotion-registry")
    uri = f"sqlite:///{folder / 'lhsfed-registry.db'}"
    first = log_campaign(nodp_run, load_settings(nodp_run), campaign="c1", uri=uri, parent_version=None)
    log_campaign(dp_run, load_settings(dp_run), campaign="c2", uri=uri, parent_version=first.version)
    return folder / "lhsfed-registry.db"


@pytest.fixture()
def registry(logged_registry, tmp_path) -> str:
    """A fresh copy of the two-version registry (promotion changes it); the artifacts stay
    where campaign logging put them, which the copy's runs still point at."""
    copy = tmp_path / "lhsfed-registry.db"
    shutil.copyfile(logged_registry, copy)
    return f"sqlite:///{copy}"


def test_rule_names_every_failing_site_and_the_pooled_difference():
    rule = PromotionRule()
    fine = judge(_comparison(0.01, {"a": (-0.05, 0.04), "b": (0.0, 0.03)}), rule)
    worse_site = judge(_comparison(0.01, {"a": (-0.09, -0.03), "b": (0.0, 0.03)}), rule)
    worse_pooled = judge(_comparison(-0.001, {"a": (-0.05, 0.04)}), rule)

    assert fine.passed and fine.findings == []
    assert not worse_site.passed and worse_site.findings == [
        "site a: difference CI [-0.0900, -0.0300] entirely below -0.02"
    ]
    assert not worse_pooled.passed and "pooled AUROC difference -0.0010 < 0" in worse_pooled.text()
    assert not judge(_comparison(None, {}), rule).passed
    assert [part.name for part in fine.parts] == ["auroc", "calibration", "net_benefit", "sites"]


@pytest.mark.slow
def test_promote_refuses_a_failing_comparison_then_moves_the_alias_on_a_passing_one(
    registry, tmp_path, capsys
):
    client = _client(registry)
    failing = _write(tmp_path, _comparison(0.02, {"cleveland": (-0.10, -0.04), "va": (-0.01, 0.05)}))

    code = lhsfed(
        ["promote", TASK, "2", "--reason", "better", "--comparison", str(failing), "--uri", registry]
    )
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert "not promoted" in err and "site cleveland" in err and "champion is unchanged" in err
    assert str(client.get_model_version_by_alias(TASK, "champion").version) == "1"
    assert "promotion.by" not in client.get_model_version(TASK, "2").tags

    stale = _write(tmp_path, _comparison(0.02, {"va": (0.0, 0.05)}, champion="7"))
    code = lhsfed(["promote", TASK, "2", "--reason", "r", "--comparison", str(stale), "--uri", registry])
    assert code == 2 and "run lhsfed compare uci_heart-num again" in capsys.readouterr().err

    passing = _write(tmp_path, _comparison(0.02, {"cleveland": (-0.03, 0.05), "va": (-0.01, 0.05)}))
    code = lhsfed(
        [
            "promote",
            TASK,
            "2",
            "--reason",
            "pooled gain, no site worse",
            "--comparison",
            str(passing),
            "--uri",
            registry,
        ]
    )
    out = capsys.readouterr().out
    tags = client.get_model_version(TASK, "2").tags
    aliases = client.get_registered_model(TASK).aliases
    assert code == 0 and "version 2 is now champion (was version 1), rule passed" in out
    assert (
        str(aliases["champion"]) == "2"
        and str(aliases["previous_champion"]) == "1"
        and "challenger" not in aliases
    )
    assert tags["promotion.reason"] == "pooled gain, no site worse" and tags["promotion.override"] == "false"
    assert tags["promotion.rule_outcome"] == "passed" and tags["promotion.replaced_version"] == "1"
    assert tags["promotion.rule.calibration"].startswith("calibration: pass: pooled ECE 0.0500 -> 0.0500")
    assert tags["promotion.rule.sites"].startswith("sites: pass")
    assert "overall: PASS" in out and "net_benefit: pass" in out
    assert tags["promotion.by"] and tags["promotion.at"].startswith("20")
    assert tags["promotion.test_decisions"] == "1" and "test splits reused" not in out

    # Back to version 1 on the same test splits: the second decision they make says so.
    back = _write(tmp_path, _comparison(0.02, {"va": (-0.01, 0.05)}, challenger="1", champion="2"))
    code = lhsfed(["promote", TASK, "1", "--reason", "r", "--comparison", str(back), "--uri", registry])
    out = capsys.readouterr().out
    assert code == 0 and "test splits reused: the sites' test rows have now decided 2 promotions" in out
    assert client.get_model_version(TASK, "1").tags["promotion.test_decisions"] == "2"


@pytest.mark.slow
def test_override_promotes_a_failing_version_and_records_the_failed_rule(registry, tmp_path, capsys):
    failing = _write(tmp_path, _comparison(-0.03, {"va": (-0.08, -0.04)}))

    code = lhsfed(
        ["promote", TASK, "2", "--reason", "needed for the new lab assay", "--override"]
        + ["--comparison", str(failing), "--uri", registry]
    )
    tags = _client(registry).get_model_version(TASK, "2").tags

    out = capsys.readouterr().out
    assert code == 0 and "by override" in out
    assert tags["promotion.override"] == "true" and tags["promotion.rule_outcome"].startswith("failed: ")
    assert "site va" in tags["promotion.rule_outcome"]
    assert str(_client(registry).get_model_version_by_alias(TASK, "champion").version) == "2"


@pytest.mark.slow
def test_promote_without_a_logged_comparison_is_refused_in_one_line(registry, capsys):
    code = lhsfed(["promote", TASK, "2", "--reason", "r", "--uri", registry])

    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "run lhsfed compare uci_heart-num first" in err
    assert str(_client(registry).get_model_version_by_alias(TASK, "champion").version) == "1"


@pytest.mark.slow
def test_predict_scores_with_the_registry_champion(registry, nodp_run, tmp_path, capsys, monkeypatch):
    """The champion (version 1, ``nodp_run``) is exported from the registry alone and scores
    the same risks as the run folder's own export."""
    (tmp_path / "site").mkdir()
    monkeypatch.chdir(tmp_path / "site")  # the default registry URI is relative to the working folder
    settings = load_settings(nodp_run)
    rows = [
        {"age": 63, "sex": 1, "cp": 1, "trestbps": 145, "chol": 233, "fbs": 1, "restecg": 2, "thalach": 150}
        | {"exang": 0, "oldpeak": 2.3, "slope": 3, "ca": 0, "thal": 6},
        {"age": 41, "sex": 0, "cp": 2, "trestbps": 130, "chol": 204, "fbs": 0, "restecg": 2, "thalach": 172}
        | {"exang": 0, "oldpeak": 1.4, "slope": 1, "ca": 0, "thal": 3},
    ]
    data = tmp_path / "patients.csv"
    with data.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=[f.name for f in settings.data.features])
        writer.writeheader()
        writer.writerows(rows)
    from_registry, from_run = tmp_path / "registry.csv", tmp_path / "run.csv"

    code = lhsfed(["predict", f"registry:{TASK}@champion", "--data", str(data), "--out", str(from_registry)])
    assert code == 2 and "no registry at sqlite:///lhsfed-registry.db" in capsys.readouterr().err
    code = lhsfed(
        [
            "predict",
            f"registry:{TASK}@champion",
            "--data",
            str(data),
            "--out",
            str(from_registry),
            "--uri",
            registry,
        ]
    )
    assert code == 0 and f"with {TASK} version 1" in capsys.readouterr().out
    assert lhsfed(["export", str(nodp_run), "--out", str(tmp_path / "export")]) == 0
    assert (
        lhsfed(
            ["predict", str(tmp_path / "export" / "model.pt"), "--data", str(data), "--out", str(from_run)]
        )
        == 0
    )

    def risks(path):
        return [float(r["risk"]) for r in csv.DictReader(path.open())]

    assert risks(from_registry) == pytest.approx(risks(from_run), abs=1e-6) and len(risks(from_run)) == 2
