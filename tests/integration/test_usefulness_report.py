"""The report's subgroup sections on a real run, rendered in headless Chromium (issue N.5).

Reuses the shared ``dp_run``; its dataset spec is marked with subgroups (sex, age bands) at
evaluation, as a modeler's spec with ``subgroup: true`` would be: no new federation.
"""

from __future__ import annotations

import dataclasses
import html
import re
import shutil

import pytest
from matplotlib import image as mpimg

from benchmarks.report_screenshot import screenshot, with_subgroups
from federation.modeler import run_loader
from federation.modeler.report import fmt, write_reports
from federation.modeler.run_evaluation import EvalOptions, evaluate_run, scorable_sites
from tests.integration.test_modeler import SITES, _embedded_pngs


@pytest.fixture(scope="module")
def subgroup_report(dp_run, tmp_path_factory):
    run = tmp_path_factory.mktemp("subgroups") / "run"
    shutil.copytree(dp_run, run)
    checkpoint = run_loader.load_saved_model(run_loader.saved_model_path(run, None))
    checkpoint = dataclasses.replace(checkpoint, dataset=with_subgroups(checkpoint.dataset))
    sites, _ = scorable_sites(checkpoint.dataset)
    evaluation, predictions = evaluate_run(
        run, run_loader.load_settings(run), checkpoint, sites, EvalOptions(threshold="suggest", resamples=100)
    )
    write_reports(run, evaluation, predictions, run_loader.read_round_records(run), "data: uci_heart\n")
    return run, evaluation


@pytest.mark.slow
def test_report_shows_subgroups_gaps_headline_and_the_suggested_threshold(subgroup_report, tmp_path):
    run, evaluation = subgroup_report
    page = (run / "report.html").read_text()
    shot = tmp_path / "report.png"

    proc = screenshot(run / "report.html", shot, tmp_path / "profile", height=3000)

    assert proc.returncode == 0, proc.stderr[-2000:]
    assert mpimg.imread(shot)[..., :3].std() > 0.05
    figures = ["ROC curves", "Calibration", "Forest plot", "Decision curves", "Rounds"]  # in section order
    assert re.findall(r'<img alt="([^"]*)"', page) == figures
    assert all(img[..., :3].std() > 0.05 for img in _embedded_pngs(page))
    pooled = evaluation["subgroups"]["pooled"]
    assert set(pooled) == {"sex", "age"} and set(pooled["age"]["levels"]) == {"<55", ">=55"}
    male = pooled["sex"]["levels"]["1"]
    assert f"<td>pooled: sex = 1</td><td>{male['n']}</td>" in page
    assert f"{fmt(male['auroc'])} [{fmt(male['auroc_ci_low'])}, {fmt(male['auroc_ci_high'])}]" in page
    gaps = pooled["sex"]["gaps"]
    assert gaps["auroc_gap_ci_low"] <= gaps["auroc_gap"] <= gaps["auroc_gap_ci_high"]
    worst = evaluation["headline"]["worst_group_auroc"]
    assert worst["auroc"] == min(m["auroc"] for f in pooled.values() for m in f["levels"].values())
    assert html.escape(f"{worst['feature']} = {worst['level']}") in page
    assert evaluation["headline"]["worst_site_auroc"]["site"] in SITES
    # the suggested threshold is the pooled validation prevalence, and the report says so
    assert "suggested: the pooled validation split" in page
    assert f"TPR@{evaluation['threshold']:g}" in page and evaluation["threshold"] != 0.5
