"""``lhsfed synth`` options for hard cohorts: rare outcome, small sites, informative missingness,
weak signal, noise columns (the benchmark set of benchmarks/defaults.py)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import yaml

from federation.cli.main import main as lhsfed
from federation.core.data import load_site, site_file
from federation.core.dataspec import parse_dataset_spec
from federation.modeler.synth import LABEL, CohortOptions, cohorts, site_sizes


def _pooled(options: CohortOptions, *, sites: int = 6, rows: int = 6000) -> pd.DataFrame:
    return pd.concat(frame for _, frame in cohorts(sites, rows, 0.5, seed=1, options=options))


def test_prevalence_sets_a_rare_outcome():
    rare = _pooled(CohortOptions(prevalence=0.07))

    assert 0.05 < rare[LABEL].mean() < 0.10
    assert _pooled(CohortOptions())[LABEL].mean() > 0.15  # the default stays about 20 %


def test_site_rows_stay_within_the_bounds_and_sum_to_the_total():
    sizes = site_sizes(6, 1500, 1.0, np.random.default_rng(3), min_rows=80, max_rows=500)

    assert sizes.sum() == 1500 and sizes.min() >= 80 and sizes.max() <= 500
    unbounded = site_sizes(6, 1500, 1.0, np.random.default_rng(3), min_rows=80)
    assert unbounded.max() > 500  # the bound is what kept them under 500


def test_informative_missingness_makes_the_missing_flag_predict_the_outcome():
    def flag_gap(options):
        frame = _pooled(options)
        missing = frame["creatinine"].isna()
        return frame.loc[missing, LABEL].mean() - frame.loc[~missing, LABEL].mean()

    at_random = flag_gap(CohortOptions(missing=4.0))
    informative = flag_gap(CohortOptions(missing=4.0, informative_missing=1.5))

    assert abs(at_random) < 0.03
    assert informative < -0.08  # unrecorded labs: healthier patients, fewer readmissions


def test_weak_signal_lowers_the_separation_of_the_outcome():
    def severity_gap(signal):
        frame = _pooled(CohortOptions(signal=signal))
        return (
            frame.loc[frame[LABEL] == 1, "heart_rate"].mean()
            - frame.loc[frame[LABEL] == 0, "heart_rate"].mean()
        )

    assert severity_gap(0.3) < 0.5 * severity_gap(1.0)


def test_cli_writes_noise_features_into_the_files_and_the_spec(tmp_path):
    code = lhsfed(
        [
            "synth",
            "--sites",
            "3",
            "--rows",
            "600",
            "--out",
            str(tmp_path),
            "--prevalence",
            "0.08",
            "--noise-features",
            "4",
            "--min-site-rows",
            "100",
            "--max-site-rows",
            "300",
        ]
    )

    assert code == 0
    text = (tmp_path / "data" / "synth.yaml").read_text()
    assert "--noise-features 4" in text.splitlines()[0]  # the header rebuilds the cohort
    spec = parse_dataset_spec(yaml.safe_load(text))
    assert len(spec.encoded_feature_names()) == 34
    site = load_site(site_file(spec, spec.site_names[0], tmp_path), spec, spec.site_names[0])
    assert site.x_train.shape[1] == 34


def test_cli_rejects_bad_options_in_one_line(tmp_path, capsys):
    assert (
        lhsfed(["synth", "--sites", "3", "--rows", "600", "--out", str(tmp_path), "--prevalence", "1.5"]) == 2
    )
    assert "--prevalence must be in (0, 1)" in capsys.readouterr().err
    assert (
        lhsfed(["synth", "--sites", "3", "--rows", "600", "--out", str(tmp_path), "--max-site-rows", "100"])
        == 2
    )
    assert "cannot fit 3 sites of at most 100 rows" in capsys.readouterr().err


def test_a_shift_moves_one_sites_numeric_features_and_draws_the_rest_as_before():
    plain = dict(cohorts(3, 900, 0.3, seed=4))
    moved = dict(cohorts(3, 900, 0.3, seed=4, shift={"hospital_002": 1.0}))

    for site in ("hospital_001", "hospital_003"):
        assert moved[site].equals(plain[site])
    a, b = plain["hospital_002"], moved["hospital_002"]
    assert b["smoker"].equals(a["smoker"]) and b["readmitted_30d"].equals(a["readmitted_30d"])
    assert b["systolic_bp"].isna().equals(a["systolic_bp"].isna())
    assert abs((b["systolic_bp"] - a["systolic_bp"]).mean() - 19) < 1.0  # 1 SD, few clipped


def test_cli_refuses_a_shift_of_an_unknown_site_or_without_a_number(tmp_path, capsys):
    for bad, message in (
        ("hospital_009=1", "--shift names hospital_009: the sites are hospital_001 .. hospital_002"),
        ("hospital_001", "--shift 'hospital_001': write SITE=SD"),
    ):
        out = str(tmp_path / bad)
        code = lhsfed(["synth", "--sites", "2", "--rows", "200", "--out", out, "--shift", bad])
        err = capsys.readouterr().err
        assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err
