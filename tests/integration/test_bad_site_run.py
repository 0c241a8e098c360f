"""A site whose file holds NaN / inf: refused by ``lhsfed site check``, sits out of a real run
with one console line a round while the others train (a run that accepts it,
``allow_absent_sites=true``, exits 0 and its summary names the site), and ``lhsfed evaluate``
reports it in one line instead of crashing (it used to: ``ValueError: Input contains NaN``)."""

from __future__ import annotations

import shutil

import pytest

from federation.cli.main import main
from federation.core.data import site_file
from federation.core.dataspec import load_spec_file
from tests.helpers.runs import REPO, read_json, run_launcher

SPEC = load_spec_file(REPO / "configs" / "data" / "uci_heart.yaml")
ROUNDS = 2


def _corrupt(path, cells: dict[tuple[int, int], str]) -> None:
    """Replace cells (0-based row, column) of a headerless CSV."""
    rows = [line.split(",") for line in path.read_text().splitlines()]
    for (row, column), value in cells.items():
        rows[row][column] = value
    path.write_text("\n".join(",".join(r) for r in rows) + "\n")


@pytest.mark.slow
def test_a_site_with_nan_and_inf_sits_out_and_the_run_evaluates(tmp_path, capsys):
    data_dir = tmp_path / "sites"
    shutil.copytree(site_file(SPEC, "hungary").parent, data_dir)
    bad = data_dir / SPEC.sites["hungary"]
    _corrupt(bad, {(5, 4): "NaN", (9, 7): "inf"})  # chol row 6, thalach row 10

    assert main(["site", "check", "--data", str(bad), "--site", "hungary"]) == 1
    verdict = capsys.readouterr().err.splitlines()[-1]
    assert "column 'chol' row 6: non-finite value 'NaN'" in verdict

    proc = run_launcher(
        tmp_path,
        f"rounds={ROUNDS}",
        "privacy=off",
        "strategy.min_train_nodes=3",
        f"federation.data_dir={data_dir}",
        "federation.runtime=inprocess",  # the site's data check is under test, not the runtime
        "allow_absent_sites=true",
    )

    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Traceback" not in proc.stdout + proc.stderr
    lines = [line.strip() for line in proc.stdout.splitlines() if "data check failed" in line]
    failures = [line for line in lines if line.startswith("round")]
    assert [line.split(":")[0].strip() for line in failures] == [
        f"round {r} train" for r in range(1, ROUNDS + 1)
    ]
    (sat_out,) = [line for line in lines if "sat out every round" in line]  # and once at the end
    assert sat_out.startswith("node ")  # it never answered, so never named its site
    run = tmp_path / "run"
    summary = read_json(run / "summary.json")
    assert set(summary["metrics"]["sites"]) == {"cleveland", "switzerland", "va"}
    assert (summary["sites"], summary["sites_trained"]) == (4, 3)
    (absent,) = summary["sites_never_trained"]
    assert absent.startswith("node ") and f"3 of 4 sites trained; never trained: {absent}" in proc.stdout

    assert main(["evaluate", str(run), "--bootstrap", "50"]) == 0
    skipped = [line for line in capsys.readouterr().out.splitlines() if "skipped" in line]
    assert len(skipped) == 1 and skipped[0].split()[:2] == ["hungary", "skipped:"]
    assert f"{bad}: column 'chol' row 6 has non-finite value 'NaN'" in skipped[0]
    evaluation = read_json(run / "evaluation.json")
    assert set(evaluation["sites"]) == {"cleveland", "switzerland", "va"}
    assert set(evaluation["skipped_sites"]) == {"hungary"}
