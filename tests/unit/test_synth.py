"""``lhsfed synth``: non-IID hospitals on disk with a spec that the data loader accepts."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import yaml

from client.site_check import validated_site
from federation.cli.main import main as lhsfed
from federation.core.data import check_site_sources, load_site, site_file
from federation.core.dataspec import parse_dataset_spec
from federation.core.errors import DataError
from federation.modeler.synth import LABEL, cohorts, site_sizes


def _summary(heterogeneity: float) -> pd.DataFrame:
    rows = []
    for _, frame in cohorts(8, 8000, heterogeneity, seed=3):
        rows.append(
            {
                "n": len(frame),
                "prevalence": frame[LABEL].mean(),
                "age": frame["age"].mean(),
                "hba1c_missing": frame["hba1c"].isna().mean(),
                "emergency": (frame["admission_type"] == "emergency").mean(),
            }
        )
    return pd.DataFrame(rows)


def test_heterogeneity_spreads_sizes_prevalence_case_mix_and_recording():
    iid, mixed = _summary(0.0), _summary(1.0)

    assert iid["n"].sum() == mixed["n"].sum() == 8000
    for column in ("n", "prevalence", "age", "hba1c_missing", "emergency"):
        assert mixed[column].std() > 2 * iid[column].std(), column
    assert 0.1 < iid["prevalence"].mean() < 0.35


def test_sizes_respect_the_minimum_and_reject_impossible_requests():
    sizes = site_sizes(100, 10_000, 1.0, np.random.default_rng(0))
    assert sizes.sum() == 10_000 and sizes.min() >= 60
    with pytest.raises(ValueError, match="cannot give 100 sites"):
        site_sizes(100, 1000, 0.5, np.random.default_rng(0))


def test_cli_writes_parquet_sites_and_a_spec_the_loader_accepts(tmp_path, capsys):
    code = lhsfed(
        [
            "synth",
            "--sites",
            "3",
            "--rows",
            "900",
            "--heterogeneity",
            "0.8",
            "--out",
            str(tmp_path),
            "--seed",
            "5",
        ]
    )

    assert code == 0
    assert "--config-dir" in capsys.readouterr().out
    spec = parse_dataset_spec(yaml.safe_load((tmp_path / "data" / "synth.yaml").read_text()))
    assert sorted(p.name for p in tmp_path.glob("*.parquet")) == [f"{s}.parquet" for s in spec.site_names]
    check_site_sources(spec, tmp_path)
    # What a ClientApp loads: the file passes the site checks first (no row taken for a header).
    site = validated_site(site_file(spec, spec.site_names[0], tmp_path), spec, spec.site_names[0])
    assert site.x_train.shape[1] == len(spec.encoded_feature_names()) == 30
    assert len(site.y_train) + len(site.y_val) + len(site.y_test) == len(
        pd.read_parquet(site_file(spec, spec.site_names[0], tmp_path))
    )
    assert np.isnan(site.x_train).any()  # some values are unrecorded


def test_headed_csv_without_a_column_list_passes_and_a_repeated_header_is_caught(tmp_path):
    """A CSV whose header names its columns (the spec lists none) is checked against that header."""
    assert lhsfed(["synth", "--sites", "2", "--rows", "600", "--out", str(tmp_path)]) == 0
    raw = yaml.safe_load((tmp_path / "data" / "synth.yaml").read_text())
    spec = parse_dataset_spec(raw | {"format": "csv", "header": True})
    name = spec.site_names[0]
    frame = pd.read_parquet(site_file(spec, name, tmp_path))
    csv = site_file(spec, name, tmp_path)
    frame.to_csv(csv, index=False)
    assert len(validated_site(csv, spec, name).y_train) > 0

    lines = csv.read_text().splitlines()
    csv.write_text("\n".join(lines[:3] + [lines[0]] + lines[3:]) + "\n")
    with pytest.raises(DataError, match="row 3: repeats the column names"):
        validated_site(csv, spec, name)


def test_cli_single_file_layout_selects_each_hospital(tmp_path):
    assert (
        lhsfed(
            [
                "synth",
                "--sites",
                "3",
                "--rows",
                "600",
                "--out",
                str(tmp_path),
                "--single-file",
                "--name",
                "pooled",
            ]
        )
        == 0
    )

    spec = parse_dataset_spec(yaml.safe_load((tmp_path / "data" / "pooled.yaml").read_text()))
    assert spec.file == "pooled.parquet" and spec.site_column == "hospital"
    parts = [load_site(site_file(spec, s, tmp_path), spec, s) for s in spec.site_names]
    total = sum(len(p.y_train) + len(p.y_val) + len(p.y_test) for p in parts)
    assert total == 600


def test_cli_rejects_bad_arguments_with_one_line(tmp_path, capsys):
    assert (
        lhsfed(["synth", "--sites", "3", "--rows", "600", "--heterogeneity", "2", "--out", str(tmp_path)])
        == 2
    )
    assert "--heterogeneity must be in [0, 1]" in capsys.readouterr().err


def test_parquet_with_a_stored_index_and_nullable_booleans_passes_the_check_as_it_loads(tmp_path):
    """Typed Parquet is checked as the loader reads it: True/False/null is 1/0/missing."""
    assert lhsfed(["synth", "--sites", "2", "--rows", "600", "--out", str(tmp_path)]) == 0
    spec = parse_dataset_spec(yaml.safe_load((tmp_path / "data" / "synth.yaml").read_text()))
    name = spec.site_names[0]
    path = site_file(spec, name, tmp_path)
    frame = pd.read_parquet(path)
    frame["diabetes"] = frame["diabetes"].astype(bool).astype(object)
    frame.loc[frame.index[:5], "diabetes"] = None
    frame.index = [f"patient-{i}" for i in range(len(frame))]  # stored, not a row number
    frame.to_parquet(path)

    site = validated_site(path, spec, name)
    loaded = load_site(path, spec, name)
    np.testing.assert_array_equal(site.x_train, loaded.x_train)
    column = spec.encoded_feature_names().index("diabetes")
    assert np.isnan(np.concatenate([site.x_train, site.x_val, site.x_test])[:, column]).sum() == 5
