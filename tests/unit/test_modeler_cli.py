"""Modeler commands on bad input: one clear line and exit code 2, never a traceback (fast)."""

from __future__ import annotations

from federation.cli.main import main as lhsfed


def test_evaluate_refuses_a_folder_that_is_not_a_run(tmp_path, capsys):
    assert lhsfed(["evaluate", str(tmp_path)]) == 2

    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not a finished run folder (no model.pt)" in err[0]


def test_predict_without_a_model_card_names_it(tmp_path, capsys):
    (tmp_path / "model.onnx").write_bytes(b"")
    (tmp_path / "patients.csv").write_text("age\n50\n")

    code = lhsfed(
        [
            "predict",
            str(tmp_path / "model.onnx"),
            "--data",
            str(tmp_path / "patients.csv"),
            "--out",
            str(tmp_path / "out.csv"),
        ]
    )

    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert "model_card.json: model card not found" in err[0]


def test_evaluate_help_says_which_round_it_scores_by_default(capsys):
    """Without --round the model handed out (the selected round's model.pt), not the last round."""
    import pytest

    with pytest.raises(SystemExit):
        lhsfed(["evaluate", "--help"])

    help_text = " ".join(capsys.readouterr().out.split())
    assert "default: the round the run handed out, model.pt" in help_text
    assert "default: final" not in help_text
