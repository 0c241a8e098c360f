"""The modeler's tools on real federation runs: evaluate, baselines, report, export, predict.

One ``lhsfed evaluate --baselines`` per shared run (DP ε=3: ``dp_run``; DP off: ``nodp_run``),
on a copy of the run folder so other tests see the fixture untouched.
"""

from __future__ import annotations

import base64
import hashlib
import html
import io
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from matplotlib import image as mpimg
from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score

from client.site_policy import SIMULATION_DEFAULTS
from federation.cli.main import main as lhsfed
from federation.core.data import encode_labels, read_site_frame, site_file, split_site
from federation.core.estimable import MIN_CLASS_ROWS, too_few
from federation.core.model import predict_risk
from federation.core.records import read_rounds
from federation.modeler.report import fmt
from federation.modeler.run_loader import load_saved_model, sites_data
from federation.modeler.scoring import run_model

LHSFED = Path(sys.executable).parent / "lhsfed"
METRIC_KEYS = {
    "auroc",
    "auroc_ci_low",
    "auroc_ci_high",
    "auprc",
    "brier",
    "ece",
    "calibration_slope",
    "calibration_intercept",
    "sensitivity",
    "specificity",
}
CI_KEYS = {"auroc_ci_low", "auroc_ci_high"}
RATE_KEYS = {"sensitivity", "specificity"}
SITES = {"cleveland", "hungary", "switzerland", "va"}
CHROMIUM = "/usr/bin/chromium"


def _evaluated_copy(run: Path, tmp: Path) -> Path:
    copy = tmp / "run"
    shutil.copytree(run, copy)
    assert lhsfed(["evaluate", str(copy), "--baselines"]) == 0
    return copy


@pytest.fixture(scope="module")
def dp_evaluated(dp_run, tmp_path_factory) -> Path:
    return _evaluated_copy(dp_run, tmp_path_factory.mktemp("dp_eval"))


@pytest.fixture(scope="module")
def nodp_evaluated(nodp_run, tmp_path_factory) -> Path:
    return _evaluated_copy(nodp_run, tmp_path_factory.mktemp("nodp_eval"))


def _evaluation(run: Path) -> dict:
    return json.loads((run / "evaluation.json").read_text())


@pytest.mark.slow
def test_evaluation_json_has_every_metric_and_sklearn_auroc(dp_evaluated):
    evaluation = _evaluation(dp_evaluated)
    checkpoint = load_saved_model(dp_evaluated / "model.pt")
    sites = sites_data(checkpoint.dataset)
    y = {s.name: s.y_test for s in sites}
    p = {s.name: predict_risk(checkpoint.model, s.x_test) for s in sites}

    assert set(evaluation["sites"]) == SITES
    for name, metrics in [*evaluation["sites"].items(), ("pooled", evaluation["pooled"])]:
        assert METRIC_KEYS <= set(metrics), name
        events = metrics["n_positive"]
        for key in METRIC_KEYS - CI_KEYS:  # a value with its 95% CI, or too few with the reason
            if too_few(key, events, metrics["n"] - events) is None:
                low, high = metrics[f"{key}_ci"]
                assert metrics[key] is not None and low <= high, (name, key)
            else:
                assert metrics[key] is None and metrics[f"{key}_ci"] is None, (name, key)
                assert metrics["not_estimable"][key]["reason"] == "too_few", (name, key)
        if metrics["auroc"] is not None:
            assert metrics["auroc_ci_low"] < metrics["auroc"] < metrics["auroc_ci_high"]
            assert metrics["auroc_ci"] == [metrics["auroc_ci_low"], metrics["auroc_ci_high"]]
    for name in SITES:
        site, events = evaluation["sites"][name], int(y[name].sum())
        if min(events, len(y[name]) - events) >= MIN_CLASS_ROWS:
            assert site["auroc"] == pytest.approx(roc_auc_score(y[name], p[name]), abs=1e-12)
            assert site["auprc"] == pytest.approx(average_precision_score(y[name], p[name]), abs=1e-12)
        else:  # switzerland: 2 negatives among its test rows
            assert site["auroc"] is None and "too few" in site["not_estimable"]["auroc"]["text"]
        assert site["brier"] == pytest.approx(brier_score_loss(y[name], p[name]), abs=1e-6)  # float32 risks
        assert site["n"] == len(y[name])
    pooled_y = np.concatenate([y[s.name] for s in sites])
    pooled_p = np.concatenate([p[s.name] for s in sites])
    assert evaluation["pooled"]["auroc"] == pytest.approx(roc_auc_score(pooled_y, pooled_p), abs=1e-12)


@pytest.mark.slow
@pytest.mark.parametrize("run_fixture", ["dp_evaluated", "nodp_evaluated"])
def test_baselines_table_is_consistent(run_fixture, request):
    evaluation = _evaluation(request.getfixturevalue(run_fixture))
    base = evaluation["baselines"]
    local, central = base["local_only"]["sites"], base["pooled_centralized"]["sites"]
    n = {name: evaluation["sites"][name]["n"] for name in SITES}

    assert set(local) == set(central) == SITES | {"pooled"}
    for name in [*SITES, "pooled"]:
        glob = evaluation["pooled"] if name == "pooled" else evaluation["sites"][name]
        if glob["auroc"] is None:  # too few to estimate (same rows: local-only too)
            assert local[name]["auroc"] is None and base["benefit_auroc"][name] is None, name
            continue
        assert base["benefit_auroc"][name] == pytest.approx(glob["auroc"] - local[name]["auroc"])
    ranked = [name for name in SITES if local[name]["auroc"] is not None]  # means over estimable sites
    estimable = {name for name in SITES if evaluation["sites"][name]["auroc"] is not None}
    assert ranked and set(ranked) == estimable
    assert base["local_only"]["mean_auroc"]["mean"] == pytest.approx(
        np.mean([local[name]["auroc"] for name in ranked])
    )
    assert base["local_only"]["mean_auroc"]["weighted_mean"] == pytest.approx(
        sum(local[name]["auroc"] * n[name] for name in ranked) / sum(n[name] for name in ranked)
    )
    assert base["benefit_auroc"]["mean"] == pytest.approx(
        evaluation["mean_auroc"]["mean"] - base["local_only"]["mean_auroc"]["mean"]
    )
    if evaluation["privacy"]["enabled"]:  # the ε the sites' training spent by the round handed out
        matched = base["trained"]["site_training_epsilon"]
        assert base["trained"]["rounds"] == evaluation["round"]
        for site, eps in base["local_only"]["epsilon"].items():
            assert eps == pytest.approx(matched[site], rel=0.01) and eps <= 3.0 + 1e-6
        assert base["pooled_centralized"]["epsilon"] == pytest.approx(max(matched.values()), rel=0.01)
    else:
        assert base["pooled_centralized"]["epsilon"] is None


@pytest.mark.slow
def test_federated_model_beats_local_only_on_average_with_dp(dp_evaluated):
    """ε = 3 at every site: the federation's mean AUROC over sites beats training alone.

    (DP off, 10 rounds, the federation does not: docs/modelers.md gives both tables.)
    """
    evaluation = _evaluation(dp_evaluated)

    assert evaluation["mean_auroc"]["mean"] > evaluation["baselines"]["local_only"]["mean_auroc"]["mean"]
    assert evaluation["baselines"]["benefit_auroc"]["mean"] > 0


def _embedded_pngs(page: str) -> list[np.ndarray]:
    blobs = re.findall(r'<img alt="[^"]*" src="data:image/png;base64,([A-Za-z0-9+/=]+)">', page)
    return [mpimg.imread(io.BytesIO(base64.b64decode(b)), format="png") for b in blobs]


@pytest.mark.slow
def test_report_html_renders_in_headless_chromium(dp_evaluated, tmp_path):
    page = (dp_evaluated / "report.html").read_text()
    shot = tmp_path / "report.png"

    proc = subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={tmp_path / 'profile'}",
            "--window-size=1200,2400",
            f"--screenshot={shot}",
            (dp_evaluated / "report.html").as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "http://" not in page and "https://" not in page  # opens offline
    images = _embedded_pngs(page)
    alts = re.findall(r'<img alt="([^"]*)"', page)
    assert alts == ["ROC curves", "Calibration", "Forest plot", "Decision curves", "Rounds"]
    assert len(images) == 5  # calibration: equal-count bins; decision curves: net benefit
    assert "<h3>Headline: who is served least well</h3>" in page
    assert "suggested" not in page and "chosen by the modeler" in page  # which threshold
    for img in images:
        assert img.shape[0] > 200 and img.shape[1] > 200 and img[..., :3].std() > 0.05
    screenshot = mpimg.imread(shot)
    assert screenshot.shape[:2] == (2400, 1200)
    assert screenshot[..., :3].std() > 0.05  # not a blank page


# TRIPOD+AI (and TRIPOD-Cluster) sections every report carries, in this order (issue T, item 4).
TRIPOD_SECTIONS = [
    "Identity",
    "Intended use",
    "Outcome",
    "Participants and data",
    "Model specification",
    "Model performance",
    "Between-site heterogeneity",
    "Decision curves",
    "Fairness",
    "Model development",
    "Privacy",
    "Limitations",
    "Configuration",
]


@pytest.mark.slow
def test_report_md_and_html_carry_the_same_tripod_sections_and_tables(dp_evaluated):
    """One document, two templates: the same h2 sections in the same order, the same table
    titles, the title naming outcome, model and data; the default run's subgroup table."""
    page = (dp_evaluated / "report.html").read_text()
    markdown = (dp_evaluated / "report.md").read_text()
    html_sections = re.findall(r"<h2>([^<]*)</h2>", page)
    md_sections = re.findall(r"^## (.*)$", markdown, flags=re.M)

    assert [s for s in html_sections if s in TRIPOD_SECTIONS] == TRIPOD_SECTIONS
    assert md_sections == html_sections
    h3 = [html.unescape(t) for t in re.findall(r"<h3>([^<]*)</h3>", page)]
    assert h3 == re.findall(r"^### (.*)$", markdown, flags=re.M)
    title = html.unescape(re.findall(r"<h1>([^<]*)</h1>", page)[0])
    assert markdown.startswith(f"# {title}\n")
    assert "coronary artery disease" in title and "logistic regression" in title and "uci_heart" in title
    assert "Subgroups: the global model per group" in markdown  # the UCI spec marks sex and age bands


@pytest.mark.slow
def test_random_effects_summary_and_i2_agree_with_statsmodels_on_the_run(dp_evaluated):
    """Acceptance 4 on a real run: the report's summary AUROC, CI and I² are statsmodels'
    DerSimonian–Laird fit of the sites' logit AUROCs, SE from each site's own 95 % interval."""
    from scipy.special import expit, logit
    from statsmodels.stats.meta_analysis import combine_effects

    evaluation = _evaluation(dp_evaluated)
    found = evaluation["heterogeneity"]["auroc"]
    sites = [m for m in evaluation["sites"].values() if None not in (m.get("auroc"), m.get("auroc_ci_low"))]
    effect = logit([m["auroc"] for m in sites])
    se = (logit([m["auroc_ci_high"] for m in sites]) - logit([m["auroc_ci_low"] for m in sites])) / (
        2 * 1.959964
    )
    reference = combine_effects(effect, se**2, method_re="dl")
    # DerSimonian–Laird truncates τ² at 0 (then the summary is the fixed-effect one)
    random = reference.tau2 > 0
    mean = reference.mean_effect_re if random else reference.mean_effect_fe
    sd = reference.sd_eff_w_re if random else reference.sd_eff_w_fe

    assert found["k"] == len(sites) >= 3
    assert found["summary"] == pytest.approx(expit(mean), abs=1e-6)
    assert found["i2"] == pytest.approx(max(reference.i2, 0.0), abs=1e-6)
    assert found["tau2"] == pytest.approx(max(reference.tau2, 0.0), abs=1e-6)
    half = 1.959964 * sd
    assert found["ci"] == pytest.approx([expit(mean - half), expit(mean + half)], abs=1e-5)
    markdown = (dp_evaluated / "report.md").read_text()
    row = _markdown_rows(markdown.split("random-effects meta-analysis of the site estimates")[1])["AUROC"]
    assert row[:2] == [str(found["k"]), fmt(found["summary"])] and row[4] == f"{100 * found['i2']:.0f} %"


def _markdown_rows(text: str) -> dict[str, list[str]]:
    rows = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if line.startswith("| ") and cells[0] not in rows:
            rows[cells[0]] = cells[1:]
    return rows


@pytest.mark.slow
def test_report_md_has_the_numbers_of_evaluation_json(dp_evaluated):
    evaluation = _evaluation(dp_evaluated)
    markdown = (dp_evaluated / "report.md").read_text()
    metrics_part = markdown.split("## Global model")[1].split("## AUROC")[0]
    rows = _markdown_rows(metrics_part)
    base = evaluation["baselines"]

    def cell(m, key):  # 'value [low, high]', or the too-few marker
        if key in (m.get("not_estimable") or {}):
            return m["not_estimable"][key]["text"]
        return f"{fmt(m[key])} [{fmt(m[key + '_ci'][0])}, {fmt(m[key + '_ci'][1])}]"

    keys = ("auroc", "auprc", "brier", "ece", "calibration_slope", "calibration_intercept")
    for name, m in [*evaluation["sites"].items(), ("pooled", evaluation["pooled"])]:
        assert rows[name] == [cell(m, k) for k in (*keys, "sensitivity", "specificity")]
    assert rows["switzerland"][0].startswith("too few (")  # 2 negatives among its test rows
    baseline_rows = _markdown_rows(markdown.split("## AUROC")[1])
    for name in [*SITES, "all test rows pooled"]:
        key = "pooled" if name.startswith("all") else name
        glob = evaluation["pooled"] if key == "pooled" else evaluation["sites"][key]
        benefit = base["benefit_auroc"][key]
        interval = base["benefit_auroc_ci"][key]
        assert baseline_rows[name] == [
            cell(glob, "auroc"),
            cell(base["local_only"]["sites"][key], "auroc"),
            cell(base["pooled_centralized"]["sites"][key], "auroc"),
            fmt(benefit) + (f" [{fmt(interval[0])}, {fmt(interval[1])}]" if interval else ""),
        ]
        if benefit is not None:  # the paired bootstrap's interval holds the difference it resamples
            assert interval[0] <= benefit <= interval[1]
    assert baseline_rows["mean of sites"][0] == fmt(evaluation["mean_auroc"]["mean"])
    assert baseline_rows["mean of sites"][3] == fmt(base["benefit_auroc"]["mean"])


def _raw_test_rows(spec, site: str) -> pd.DataFrame:
    """A site's held-out rows as raw columns: the same seeded split the sites made."""
    path = site_file(spec, site)
    frame = read_site_frame(path, spec)
    names = [f.name for f in spec.features]
    _, raw_test, _, _ = split_site(
        frame[names].to_numpy(dtype="float64"), encode_labels(frame, spec, path), spec
    )
    return pd.DataFrame(raw_test, columns=names)


@pytest.mark.slow
@pytest.mark.parametrize("fmt_name, filename", [("torchscript", "model.pt"), ("onnx", "model.onnx")])
def test_exported_model_gives_the_torch_risks_and_predict_scores_a_csv(
    dp_evaluated, tmp_path, fmt_name, filename
):
    out = tmp_path / "export"
    assert lhsfed(["export", str(dp_evaluated), "--format", fmt_name, "--out", str(out)]) == 0
    checkpoint = load_saved_model(dp_evaluated / "model.pt")
    card = json.loads((out / "model_card.json").read_text())

    for site in sites_data(checkpoint.dataset):
        raw = _raw_test_rows(checkpoint.dataset, site.name)
        raw.to_csv(tmp_path / "patients.csv", index=False)
        assert (
            lhsfed(
                [
                    "predict",
                    str(out / filename),
                    "--data",
                    str(tmp_path / "patients.csv"),
                    "--out",
                    str(tmp_path / "scored.csv"),
                ]
            )
            == 0
        )
        scored = pd.read_csv(tmp_path / "scored.csv")
        np.testing.assert_allclose(
            scored["risk"], predict_risk(checkpoint.model, site.x_test), atol=1e-5, rtol=0
        )
    assert card["model"]["format"] == fmt_name
    selected = json.loads((dp_evaluated / "summary.json").read_text())["selection"]["round"]
    assert set(card["training"]["sites"]) == SITES and card["training"]["rounds"] == selected
    assert set(card["privacy"]["epsilon"]) == SITES
    assert card["metrics"]["pooled"]["auroc_ci_low"] < card["metrics"]["pooled"]["auroc"]


@pytest.mark.slow
def test_predict_refuses_a_csv_missing_a_model_card_column(dp_evaluated, tmp_path):
    out = tmp_path / "export"
    assert lhsfed(["export", str(dp_evaluated), "--format", "onnx", "--out", str(out)]) == 0
    checkpoint = load_saved_model(dp_evaluated / "model.pt")
    raw = _raw_test_rows(checkpoint.dataset, "cleveland").drop(columns=["chol"])
    raw.to_csv(tmp_path / "patients.csv", index=False)

    proc = subprocess.run(
        [
            str(LHSFED),
            "predict",
            str(out / "model.onnx"),
            "--data",
            str(tmp_path / "patients.csv"),
            "--out",
            str(tmp_path / "scored.csv"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "column 'chol' is missing" in lines[0] and "patients.csv" in lines[0]
    assert not (tmp_path / "scored.csv").exists()


class _EveryoneLowRisk(torch.nn.Module):
    """A working stand-in model an attacker could swap in: risk 0 for every patient."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.zeros(x.shape[0])


def _predict(model: Path, tmp_path: Path, capsys) -> tuple[int, list[str]]:
    code = lhsfed(
        [
            "predict",
            str(model),
            "--data",
            str(tmp_path / "patients.csv"),
            "--out",
            str(tmp_path / "scored.csv"),
        ]
    )
    return code, capsys.readouterr().err.strip().splitlines()


@pytest.mark.slow
def test_predict_refuses_a_model_changed_after_export(dp_evaluated, tmp_path, capsys):
    out = tmp_path / "export"
    assert lhsfed(["export", str(dp_evaluated), "--out", str(out)]) == 0
    card = json.loads((out / "model_card.json").read_text())
    exported = (out / "model.pt").read_bytes()
    checkpoint = load_saved_model(dp_evaluated / "model.pt")
    _raw_test_rows(checkpoint.dataset, "cleveland").to_csv(tmp_path / "patients.csv", index=False)
    assert card["model"]["sha256"] == hashlib.sha256(exported).hexdigest()
    assert _predict(out / "model.pt", tmp_path, capsys)[0] == 0  # unmodified: predicts
    swapped = io.BytesIO()
    torch.jit.save(torch.jit.script(_EveryoneLowRisk()), swapped)
    # control: the swapped file is a working model; only the card's hash tells it apart
    rows = np.zeros((2, len(card["input"]["columns"])), "float32")
    assert (run_model(swapped.getvalue(), "torchscript", rows) == 0).all()
    one_byte = bytearray(exported)
    one_byte[len(one_byte) // 2] ^= 1

    for changed in (swapped.getvalue(), bytes(one_byte)):
        (out / "model.pt").write_bytes(changed)
        (tmp_path / "scored.csv").unlink(missing_ok=True)
        code, err = _predict(out / "model.pt", tmp_path, capsys)
        assert code == 2 and len(err) == 1, err
        assert f"{out / 'model.pt'}: SHA-256" in err[0]
        assert "not the model the card describes" in err[0]
        assert not (tmp_path / "scored.csv").exists()


@pytest.mark.slow
def test_deployment_path_reports_what_the_sites_sent_in_the_evaluate_round(nodp_evaluated, tmp_path):
    """A run without DP (the sites release exact numbers, as their policy allows): the
    deployment path reports what they sent, equal to the modeler's scoring of the rows. Under DP
    the same path reports the noisy releases (test_dp_deployment_path_reports_the_releases)."""
    simulated = _evaluation(nodp_evaluated)
    copy = tmp_path / "run"
    shutil.copytree(nodp_evaluated, copy)

    assert lhsfed(["evaluate", str(copy), "--from-rounds"]) == 0
    deployed = _evaluation(copy)

    assert (
        deployed["mode"] == f"simulation: the sites' own evaluation, metrics.jsonl round {simulated['round']}"
    )
    assert simulated["mode"] == "simulation: scored here on the sites' test rows"
    assert deployed["round"] == simulated["round"]
    for name in SITES:  # each site scored the same model on the same rows, at home
        exact = simulated["sites"][name]
        for key in METRIC_KEYS - CI_KEYS - RATE_KEYS | {"n", "n_positive", "threshold"}:
            if exact[key] is None:  # too few to estimate: the same floor on the same counts
                assert deployed["sites"][name][key] is None, (name, key)
                continue
            assert deployed["sites"][name][key] == pytest.approx(exact[key], abs=1e-6), (name, key)
        if any(exact[key] is None for key in RATE_KEYS):
            assert all(deployed["sites"][name][key] is None for key in RATE_KEYS if exact[key] is None)
            continue
        # The rates at the threshold leave a site only when every confusion cell holds >= k
        # patients (the simulated site's k): times the class counts they are those cells.
        tp = round(exact["sensitivity"] * exact["n_positive"])
        tn = round(exact["specificity"] * (exact["n"] - exact["n_positive"]))
        cells = (tp, exact["n_positive"] - tp, tn, exact["n"] - exact["n_positive"] - tn)
        for key in RATE_KEYS:
            if min(cells) >= SIMULATION_DEFAULTS["min-cell-size"]:
                assert deployed["sites"][name][key] == pytest.approx(exact[key], abs=1e-6), (name, key)
            else:
                assert deployed["sites"][name][key] is None, (name, key, cells)
        # The bootstrap CI: the site draws its resamples from its own secret randomness, so
        # only the same kind of interval around the same AUROC, not the same bounds.
        site = deployed["sites"][name]
        if site["auroc"] is None:
            continue
        assert site["auroc_ci_low"] <= site["auroc"] <= site["auroc_ci_high"], name
        for key in CI_KEYS:
            assert site[key] == pytest.approx(simulated["sites"][name][key], abs=0.1), (name, key)
    # pooled AUROC from score histograms (bins of 0.01) is close to the exact pooled one
    assert deployed["pooled"]["auroc"] == pytest.approx(simulated["pooled"]["auroc"], abs=0.01)
    assert deployed["pooled"]["ece"] is None  # needs the rows: not known in deployment
    # decision curves from the released histograms: treat-all needs only the prevalence, and
    # at threshold 0 the model treats everyone (exact whatever bins the sites merged)
    for curve in ("treat_all", "treat_none"):
        assert deployed["decision_curve"]["pooled"][curve] == pytest.approx(
            simulated["decision_curve"]["pooled"][curve], abs=1e-12
        )
    assert deployed["decision_curve"]["pooled"]["model"][0] == pytest.approx(
        simulated["decision_curve"]["pooled"]["model"][0], abs=1e-12
    )
    assert set(deployed["calibration_quantile"]) == SITES | {"pooled"}
    assert "n/a" in (copy / "report.md").read_text()
    assert lhsfed(["evaluate", str(copy), "--from-rounds", "--baselines"]) == 2


def test_dp_deployment_path_reports_the_releases(dp_evaluated, tmp_path):
    """Under DP `lhsfed evaluate --from-rounds` reports the sites' one test release of the round
    handed out: noisy numbers with intervals, whatever the rows' exact ones are."""
    copy = tmp_path / "run"
    shutil.copytree(dp_evaluated, copy)

    assert lhsfed(["evaluate", str(copy), "--from-rounds"]) == 0
    deployed = _evaluation(copy)

    record = next(r for r in read_rounds(copy) if r["round"] == deployed["round"])
    assert set(deployed["sites"]) == set(SITES) == set(record["evaluate"]["sites"])
    for name in SITES:
        site, released = deployed["sites"][name], record["evaluate"]["sites"][name]
        noisy_events = released["n_positive"]
        if too_few("auroc", noisy_events, released["n_test"] - noisy_events) is not None:
            assert site["auroc"] is None and site["not_estimable"]["auroc"]["noisy_counts"], name
            continue
        assert site["auroc"] == released["auroc"]
        if site["auroc"] is not None:  # the noisy class totals can leave it undefined
            assert site["auroc_ci_low"] <= site["auroc"] <= site["auroc_ci_high"], name
        assert record["evaluate"]["sites"][name]["release_noise_std"] > 0


def _report_rows(markdown: str, section: str) -> dict[str, list[str]]:
    return _markdown_rows(markdown.split(f"## {section}")[1].split("\n## ")[0])


@pytest.mark.slow
def test_one_runs_auroc_epsilon_and_round_agree_in_console_files_mlflow_and_report(
    dp_run, dp_evaluated, tmp_path
):
    """Acceptance 2 of issue T: the dp_run's pooled test AUROC, each site's ε and the round
    handed out read the same (as shown: 3 decimals) in lhsfed-train's console, summary.json,
    metrics.jsonl, MLflow (log_campaign) and the report. The console's last ε used to be the
    ledger after the last round's training (2.73), not what the sites spent (3.00)."""
    from mlflow import MlflowClient

    from federation.coordinator.registry import log_campaign
    from federation.core.records import read_round_records
    from federation.modeler.run_loader import load_settings
    from server.selection import chosen_round
    from tests.helpers.runs import CONSOLE

    summary = json.loads((dp_run / "summary.json").read_text())
    sites = sorted(summary["privacy"]["sites"])
    three = lambda value: f"{value:.3f}"  # noqa: E731 - the one rounding every source shows
    sources: dict[str, tuple] = {}
    sources["summary.json"] = (
        summary["selection"]["round"],
        three(summary["metrics"]["pooled"]["auroc"]),
        {s: three(summary["privacy"]["sites"][s]["epsilon"]) for s in sites},
    )

    console = (dp_run.parent / CONSOLE).read_text().splitlines()
    (last,) = [line for line in console if line.startswith("handed out: ")]
    found = re.fullmatch(
        r"handed out: round (\d+) of \d+; pooled test AUROC ([\d.]+) \[.*\]; ε this run: (.*)", last
    )
    assert found, last
    console_eps = dict(part.split() for part in found.group(3).split(", "))
    sources["console"] = (int(found.group(1)), found.group(2), console_eps)

    settings = load_settings(dp_run)
    records = read_round_records(dp_run)
    chosen = chosen_round(records, settings.selection.metric)
    tested = [r.round for r in records if r.evaluate.sites]  # under DP: the one test release
    assert tested == [chosen]
    spent = {
        s: max(
            m["epsilon"]
            for r in records
            for part in (r.train, r.evaluate.sites)
            for x, m in part.items()
            if x == s
        )
        for s in sites
    }
    selected = next(r for r in records if r.round == chosen)
    sources["metrics.jsonl"] = (
        chosen,
        three(selected.evaluate.pooled["auroc"]),
        {s: three(e) for s, e in spent.items()},
    )

    uri = f"sqlite:///{tmp_path / 'registry.db'}"
    logged = log_campaign(dp_run, settings, campaign="consistency", uri=uri, parent_version=None)
    run = MlflowClient(tracking_uri=uri, registry_uri=uri).get_run(logged.run_id)
    sources["MLflow"] = (
        int(run.data.tags["selected_round"]),
        three(run.data.metrics["selected/test/pooled/auroc"]),
        {s: three(float(run.data.tags[f"epsilon.{s}"])) for s in sites},
    )
    mlflow_latest = {s: three(run.data.metrics[f"epsilon/{s}"]) for s in sites}
    assert mlflow_latest == sources["MLflow"][2]

    markdown = (dp_evaluated / "report.md").read_text()
    rounds = _report_rows(markdown, "Rounds")
    (marked,) = [name for name in rounds if name.endswith("(selected)")]
    privacy = _report_rows(markdown, "Sites")
    note = re.search(r"The run's own pooled test AUROC of round (\d+) [^:]*: ([\d.]+)", markdown)
    assert note and note.group(1) == marked.split()[0]
    assert rounds[marked][2] == note.group(2)  # its Rounds table's test AUROC, the same figure
    sources["report"] = (int(marked.split()[0]), note.group(2), {s: privacy[s][3] for s in sites})

    assert len(set(map(repr, sources.values()))) == 1, sources
