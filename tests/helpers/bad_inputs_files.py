"""The files the bad-input corpus feeds the commands: one tiny real run, its exports, and
broken copies of each kind of input (model, card, patients CSV, keys, CA, synth folder).

Built once per module (``build_corpus``): the run is one round of the real ServerApp loop
and ClientApp in this process (``federation.coordinator.inprocess``, no Ray), ~10 s with its exports.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
from pathlib import Path

import pandas as pd
import yaml
from omegaconf import OmegaConf

from federation.coordinator.flwr_app_config import compose_config
from federation.core.data import site_file

RUN_OVERRIDES = ["privacy=off", "rounds=1"]
COLUMNS = "age,sex,cp,trestbps,chol,fbs,restecg,thalach,exang,oldpeak,slope,ca,thal".split(",")


def _tiny_run(run: Path) -> None:
    """A finished one-round run folder, with the .hydra/config.yaml lhsfed-train would save."""
    from federation.coordinator.inprocess import run_config_for, run_in_process

    plain = compose_config(RUN_OVERRIDES)
    plain["output_dir"] = str(run)
    (run / ".hydra").mkdir(parents=True)
    OmegaConf.save(OmegaConf.create(plain), run / ".hydra" / "config.yaml")
    run_in_process(run_config_for(RUN_OVERRIDES, run), run_dir=run, num_nodes=4)


def _exports(d: Path) -> None:
    from federation.cli.main import main as lhsfed

    assert lhsfed(["export", str(d / "run"), "--format", "onnx", "--out", str(d / "onnx")]) == 0
    assert lhsfed(["export", str(d / "run"), "--format", "torchscript", "--out", str(d / "ts")]) == 0


def _card_variant(d: Path, name: str, model: bytes, card) -> None:
    """``d/name/model.onnx`` with ``card`` (a dict, list or raw bytes) beside it."""
    (d / name).mkdir()
    (d / name / "model.onnx").write_bytes(model)
    data = card if isinstance(card, bytes) else json.dumps(card).encode()
    (d / name / "model_card.json").write_bytes(data)


def _cards(d: Path) -> None:
    model = (d / "onnx" / "model.onnx").read_bytes()
    card = json.loads((d / "onnx" / "model_card.json").read_text())
    garbage = b"not a model " * 8
    sha = hashlib.sha256(garbage).hexdigest()
    _card_variant(d, "garbage_onnx", garbage, {**card, "model": {**card["model"], "sha256": sha}})
    (d / "garbage_ts").mkdir()
    (d / "garbage_ts" / "model.pt").write_bytes(garbage)
    ts_card = json.loads((d / "ts" / "model_card.json").read_text())
    (d / "garbage_ts" / "model_card.json").write_text(
        json.dumps({**ts_card, "model": {**ts_card["model"], "sha256": sha}})
    )
    _card_variant(d, "card_no_input", model, {"model": card["model"]})
    _card_variant(d, "card_list", model, [1, 2])
    _card_variant(d, "card_not_json", model, b"{ not json")
    _card_variant(d, "card_binary", model, os.urandom(64) + b"\xff\xfe")
    _card_variant(d, "card_no_sha", model, {**card, "model": {"format": "onnx"}})
    _card_variant(d, "card_format", model, {**card, "model": {**card["model"], "format": "pickle"}})
    _card_variant(d, "swapped", model[:-1] + bytes([model[-1] ^ 1]), card)
    (d / "no_card").mkdir()
    (d / "no_card" / "model.onnx").write_bytes(model)


def _csv(path: Path, header: list[str], rows: list[list[str]]) -> None:
    path.write_text("\n".join(",".join(r) for r in [header, *rows]) + "\n")


def _patients(d: Path) -> None:
    source = site_file_rows()
    header = ["patient_id", *COLUMNS]
    rows = [[f"p{i}", *r] for i, r in enumerate(source)]
    _csv(d / "patients.csv", header, rows)

    def changed(name: str, column: str, value: str) -> None:
        bad = [list(r) for r in rows]
        bad[1][header.index(column)] = value
        _csv(d / name, header, bad)

    for name, column, value in [
        ("nan.csv", "age", "NaN"),
        ("inf.csv", "chol", "inf"),
        ("neg_inf.csv", "oldpeak", "-inf"),
        ("e309.csv", "age", "1e309"),
        ("e39.csv", "thalach", "1e39"),
        ("text.csv", "age", "abc"),
        ("age430.csv", "age", "430"),
        ("cp9.csv", "cp", "9"),
        ("sex2.csv", "sex", "2"),
    ]:
        changed(name, column, value)
    _csv(d / "dup.csv", [*header, "age"], [[*r, "50"] for r in rows])
    _csv(
        d / "no_chol.csv",
        [h for h in header if h != "chol"],
        [[v for h, v in zip(header, r) if h != "chol"] for r in rows],
    )
    _csv(d / "header_only.csv", header, [])
    (d / "empty.csv").write_bytes(b"")
    (d / "binary.csv").write_bytes(b"\xff\xfe\x00" + os.urandom(200))
    (d / "folder").mkdir()
    (d / "link.csv").symlink_to(d / "patients.csv")
    os.link(d / "patients.csv", d / "hard.csv")


def site_file_rows(n: int = 6) -> list[list[str]]:
    """The first ``n`` complete Cleveland rows, features only, as text."""
    from federation.core.dataspec import load_spec_file

    spec = load_spec_file(Path(__file__).resolve().parents[2] / "configs" / "data" / "uci_heart.yaml")
    lines = site_file(spec, "cleveland").read_text().splitlines()
    return [line.split(",")[: len(COLUMNS)] for line in lines if "?" not in line][:n]


def _keys(d: Path) -> None:
    from federation.security import pki

    pki.create_node_key("site", d / "keys")
    pki.create_signing_key("publisher", d / "keys")
    pki.create_ca(d / "ca")
    (d / "keys" / "random.pub").write_bytes(os.urandom(300))
    (d / "bad_ca").mkdir()
    (d / "bad_ca" / pki.CA_KEY).write_text("-----BEGIN PRIVATE KEY-----\nnot base64\n")
    (d / "bad_ca" / pki.CA_CERT).write_text("not a certificate\n")


def _runs(d: Path) -> None:
    (d / "not_a_run").mkdir()
    (d / "run_no_model" / ".hydra").mkdir(parents=True)
    shutil.copy(d / "run" / ".hydra" / "config.yaml", d / "run_no_model" / ".hydra")
    (d / "run_bad_model" / ".hydra").mkdir(parents=True)
    shutil.copy(d / "run" / ".hydra" / "config.yaml", d / "run_bad_model" / ".hydra")
    (d / "run_bad_model" / "model.pt").write_bytes(b"PK\x03\x04 not a zip")
    (d / "synth_done" / "data").mkdir(parents=True)  # an earlier synth's spec
    (d / "synth_done" / "data" / "synth.yaml").write_text("name: synth\n")


# 64 bytes on which torch's weights-only unpickler raised IndexError ("pop from empty list").
RANDOM_BYTES = random.Random(2).randbytes(64)


def _random_byte_runs(d: Path) -> None:
    """A run whose model.pt, and one whose checkpoint.pt, are random bytes."""
    for name in ("run_random_model", "run_random_checkpoint"):
        shutil.copytree(d / "run", d / name, ignore=shutil.ignore_patterns("rounds", "export"))
    (d / "run_random_model" / "model.pt").write_bytes(RANDOM_BYTES)
    (d / "run_random_checkpoint" / "checkpoint.pt").write_bytes(RANDOM_BYTES)


def _site_files(d: Path) -> None:
    """A synth hospital's spec (text levels, data.id_column) and broken extracts of it."""
    from federation.modeler.synth import dataset_spec, hospital_cohort

    spec = {**dataset_spec("synth", {"h": "h.csv"}), "format": "csv"}
    (d / "synth_csv.yaml").write_text(yaml.safe_dump(spec))
    (d / "synth_parquet.yaml").write_text(yaml.safe_dump(dataset_spec("synth", {"h": "h.parquet"})))
    frame = hospital_cohort("h", 80, 0.3, seed=4)
    pd.concat([frame, frame]).to_parquet(d / "appended.parquet", index=False)
    frame.to_csv(d / "semicolon.csv", sep=";", decimal=",", index=False)
    frame.drop(columns=["patient_id", "hospital", "smoker", "admission_type"]).to_csv(
        d / "headerless.csv", header=False, index=False
    )
    lines = frame.to_csv(index=False).splitlines()
    lines[3], lines[9] = lines[3].rsplit(",", 1)[0], lines[9] + ",1"  # rows 3 and 9
    (d / "short_rows.csv").write_text("\n".join(lines) + "\n")
    ids = frame.copy()
    ids.loc[40, "patient_id"] = ids.loc[5, "patient_id"]
    ids.to_parquet(d / "repeated_id.parquet", index=False)


def build_corpus(d: Path) -> Path:
    """Every input file of the corpus under ``d``; returns ``d``."""
    _tiny_run(d / "run")
    _exports(d)
    _cards(d)
    _patients(d)
    _keys(d)
    _runs(d)
    _random_byte_runs(d)
    _site_files(d)
    return d


def snapshot(*roots: Path) -> dict[str, str]:
    """SHA-256 of every file (and the name of every folder and link) under ``roots``."""
    found = {}
    for root in roots:
        for path in sorted(Path(root).rglob("*")):
            if path.is_symlink():
                found[str(path)] = "link -> " + os.readlink(path)
            elif path.is_dir():
                found[str(path)] = "folder"
            elif "__pycache__" not in path.parts:
                found[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest()
    return found
