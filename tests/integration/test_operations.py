"""docs/operations.md, run as written on docs/deployment.md's walk-through network.

The runbook's ```bash blocks (numbered steps, tests/helpers/walkthrough.py with
``doc=OPERATIONS``) run on the session's ``deployment_network``, never a network of their own:
a TLS SuperLink behind its proxy, cleveland and hungary through the node entrypoint, and the
guarded node, which refuses every app (so every run and query lists it as refused, and ``$SL``
carries ``allow_absent_sites=true``: the doc's two hospitals alone would not need it).
Deployment runs: a one-round campaign, a drift query, a two-round campaign interrupted with
SIGINT after round 1 and resumed, a compare query. The registry is MLflow's SQLite file in the
shell's folder (the default URI); ``registry.min_pooled_auroc=0`` in ``$SL`` registers the
one-round version whatever its noisy validation AUROC.
"""

from __future__ import annotations

import csv
import os
import re
import shutil
import signal
from pathlib import Path

import pytest

from client.ledger import SiteLedger
from client.node_identity import NodeIdentity
from federation.core.privacy import planned_releases
from federation.core.records import read_rounds
from federation.modeler.run_loader import load_settings
from tests.helpers.walkthrough import GUARDED, OPERATIONS, Walkthrough

pytestmark = pytest.mark.slow
TASK = "uci_heart-num"
HEALTHY = "cleveland"  # never killed nor capped in the shared network's tests
HARMLESS = (
    "EXPERIMENTAL: SuperExec authentication is experimental and may change in future releases.",
    "Connection attempt failed, retrying in ",
)
COLUMNS = "age,sex,cp,trestbps,chol,fbs,restecg,thalach,exang,oldpeak,slope,ca,thal,num".split(",")


@pytest.fixture(scope="module")
def walk(deployment_network) -> Walkthrough:
    net = deployment_network
    walk = Walkthrough(net, doc=OPERATIONS)
    walk.vars |= {
        "SL": f"federation=deployment superlink={net.control_address} federation.ca_cert={net.ca_cert} "
        "allow_absent_sites=true registry.min_pooled_auroc=0",
        "LHSFED_RUNS_ROOT": walk.vars["RUNS"],
    }
    return walk


def _ran(proc, what: str) -> str:
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"{what}: exit {proc.returncode}\n{out[-4000:]}"
    return out


def _run_folder(out: str) -> Path:
    return Path(re.search(r"^run folder: (\S+)$", out, re.MULTILINE).group(1))


@pytest.fixture(scope="module")
def first(walk) -> dict:
    """Step 3: the first campaign, one round."""
    out = _ran(walk.run(3, 0, timeout=900, ROUNDS="1"), "step 3")
    run = _run_folder(out)
    return {"out": out, "RUN": str(run), "RUN_ID": re.search(r"submitted run (\d+)", out).group(1)}


@pytest.fixture(scope="module")
def drift(walk, first) -> str:
    return _ran(walk.run(4, 0, timeout=600), "step 4")


@pytest.fixture(scope="module")
def second(walk, drift) -> dict:
    """Step 5: the next campaign, two rounds, Ctrl-C (SIGINT to its process group, as a
    terminal sends it) once its round 1 line is out, then resumed with the doc's block."""
    proc = walk.start(5, 0, ROUNDS="2")
    lines = []
    try:
        for line in proc.stdout:
            lines.append(line)
            if line.startswith("round   1/2"):
                os.killpg(proc.pid, signal.SIGINT)
        proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    interrupted = "".join(lines)
    found = re.search(
        r"^lhsfed-train: interrupted after round (\d+); resume with lhsfed-train resume=(\S+)$",
        interrupted,
        re.MULTILINE,
    )
    assert found, interrupted[-4000:]
    run = found.group(2)
    resumed = _ran(walk.run(5, 1, timeout=900, RUN=run), "step 5, resume")
    return {
        "interrupted": interrupted,
        "code": proc.returncode,
        "round": found.group(1),
        "RUN": run,
        "resumed": resumed,
    }


@pytest.fixture(scope="module")
def compare(walk, second) -> str:
    return _ran(walk.run(6, 0, timeout=600), "step 6")


def _under(path: str | Path, root: str) -> bool:
    return Path(path).resolve().is_relative_to(Path(root).resolve())


def test_step_1_every_site_is_online_under_its_node_id(walk, deployment_network):
    lines = [line.split() for line in walk.check(1, 0).splitlines()]
    assert lines[0] == ["SITE", "NODE", "ID", "STATUS"]
    listed = {line[0]: (int(line[1]), line[-1]) for line in lines[1:]}
    for site in ("cleveland", "hungary"):
        assert listed[site] == (deployment_network.node_ids[site], "online")


def test_step_3_a_campaign_under_the_runs_root_registers_the_champion(walk, first):
    assert _under(first["RUN"], walk.vars["RUNS"]) and Path(first["RUN"]).parent.parent.name == "runs"
    assert re.search(rf"registry: campaign heart-2026q1: .*task {TASK} version 1 = champion", first["out"])
    assert [r["round"] for r in read_rounds(Path(first["RUN"]))] == [1]
    shown = _ran(walk.run(3, 1), "step 3 block 1")
    assert re.search(r"version 1\s+champion\s+parent none\s+campaign heart-2026q1", shown)


def test_step_7_every_log_of_the_run_is_where_the_doc_says(walk, first):
    """launcher.log holds the deployment's stream (it was empty before), and ``flwr log``
    from the run's Flower home prints the ServerApp's log from the SuperLink."""
    out = _ran(walk.run(7, 0, RUN=first["RUN"], RUN_ID=first["RUN_ID"]), "step 7")
    run = Path(first["RUN"])
    launcher = (run / "launcher.log").read_text()
    round_line = next(line for line in first["out"].splitlines() if line.startswith("round   1/1"))
    assert round_line in launcher and f"Successfully started run {first['RUN_ID']}" in launcher
    assert f"run {first['RUN_ID']} on " in launcher and "ended finished:completed" in launcher
    assert round_line in out  # flwr log: the same round line, from the SuperLink
    for name in ("launcher.log", "metrics.jsonl"):
        assert (run / name).stat().st_size > 0
    assert (Path(walk.vars["STATE"]) / "superlink.log").stat().st_size > 0


def test_step_4_drift_answers_from_both_sites_into_the_runs_root(walk, drift):
    wrote = Path(re.search(r"^wrote (\S+drift\.json)", drift, re.MULTILINE).group(1))
    assert wrote.is_file() and _under(wrote, walk.vars["RUNS"]) and wrote.parent.parent.name == "drift"
    for site in ("cleveland", "hungary"):
        assert re.search(rf"^{site}: (DRIFT in |no drift flagged)", drift, re.MULTILINE)
    guarded = walk.net.node_ids[GUARDED]
    assert f"node {guarded}: refused" in drift


def test_step_2_a_healthy_node_logs_its_id_and_only_the_harmless_warnings(walk, deployment_network, drift):
    """After the first campaign and the drift query (before step 5's interrupted round, which
    the site refuses at ERROR): the node's id is the one registered; every WARNING or ERROR
    line of its log is one the doc lists as harmless, and the first of them is there."""
    out = walk.check(2, 0, **walk.site(HEALTHY))
    ids = re.findall(r"SuperNode ID: (\d+)", out)
    assert ids and {int(i) for i in ids} == {deployment_network.node_ids[HEALTHY]}
    flagged = [line for line in out.splitlines() if "SuperNode ID:" not in line]
    assert flagged and any(HARMLESS[0] in line for line in flagged)
    assert [line for line in flagged if not any(h in line for h in HARMLESS)] == []


def test_step_5_ctrl_c_after_round_1_then_resume_completes_the_campaign(walk, second):
    assert second["code"] == 130 and second["round"] == "1"
    run = Path(second["RUN"])
    assert _under(run, walk.vars["RUNS"])
    assert "interrupted after round 1" in (run / "launcher.log").read_text()
    assert [r["round"] for r in read_rounds(run)] == [1, 2]
    assert re.search(rf"task {TASK} version 2 = challenger", second["resumed"])
    assert _run_folder(second["resumed"]) == run
    # the resumed campaign keeps the lineage its start recorded (init=registry:...@champion)
    assert re.search(r"version 2\s+challenger\s+parent 1\s", _ran(walk.run(3, 1), "registry show"))
    # A site that refused a round (e.g. round 2 sent again after it had reserved it before the
    # stop) has the reason in its site.log, beside its ledger, as the doc's log table says.
    for record in read_rounds(run):
        for failure in record["failures"]:
            site = failure.get("site")
            if failure["reason"].startswith("budget refused: ") and site in ("cleveland", "hungary"):
                log = walk.net.root / "sites" / site / "ledger" / "site.log"
                assert failure["reason"].removeprefix("budget refused: ").split(";")[0] in log.read_text()


def test_step_6_compare_answers_from_both_sites_into_the_runs_root(walk, compare):
    rows = {
        line.split()[0]: line.split()[1]
        for line in compare.splitlines()
        if line.startswith(("cleveland ", "hungary "))
    }
    assert rows == {"cleveland": "91", "hungary": "89"}
    assert f"refused: node {walk.net.node_ids[GUARDED]}" in compare
    found = re.search(
        r"^comparison: (\S+comparison\.json), \S+comparison\.html; logged to the challenger's",
        compare,
        re.MULTILINE,
    )
    assert found and _under(found.group(1), walk.vars["RUNS"]) and Path(found.group(1)).is_file()


def test_step_8_the_site_ledger_command_shows_what_the_ledger_holds(walk, first, drift, compare):
    """Every DP release is charged: the one-round run's steps and releases inside its target
    (3.0), the drift and compare queries beside it at the site's query ε (0.5)."""
    values = walk.site(HEALTHY)
    out = walk.check(8, 0, **values)
    folder = Path(values["SITE_DIR"])
    ledger = SiteLedger(
        folder / "ledger" / "ledger.sqlite",
        identity=NodeIdentity.of_key(folder / f"{HEALTHY}.key"),
        site=HEALTHY,
    )
    lifetime = re.search(r"^lifetime ε (\S+) at δ=1e-05: (\d+) rows", out, re.MULTILINE)
    assert lifetime and float(lifetime.group(1)) == round(ledger.last_total(), 3)
    assert int(lifetime.group(2)) == len(ledger.entries())
    runs = {line.split()[-1]: line.split()[:-1] for line in out.splitlines()[1:-1]}
    first_run = runs[first["RUN"]]
    # validation, test and, where the spec marks subgroups (the embedded UCI spec does), theirs
    assert first_run[2] == str(sum(planned_releases(load_settings(Path(first["RUN"]))).values()))
    assert float(first_run[3]) == pytest.approx(3.0, abs=0.001)
    queries = [run for run in runs if "/drift/" in run or "/comparisons/" in run]
    assert {Path(q).parent.name for q in queries} == {"drift", "comparisons"}
    for query in queries:
        assert runs[query] == ["1", "0", "1", "0.500"]


def test_steps_9_and_10_export_then_score_at_the_site_and_refuse_a_tampered_model(walk, first, tmp_path):
    out = walk.check(9, 0, RUN=first["RUN"])
    export = Path(first["RUN"]) / "export"
    assert "model.onnx" in out and (export / "model_card.json").is_file()
    shell = walk.net.root / "shell"  # the hospital receives export/ (model and card together)
    shutil.copytree(export, shell / "export", dirs_exist_ok=True)
    patients = tmp_path / "patients.csv"
    rows = [line.split(",") for line in walk.data[HEALTHY].read_text().split()]
    with patients.open("w", newline="") as handle:
        csv.writer(handle).writerows([COLUMNS, *rows])
    (shell / "scored.csv").unlink(missing_ok=True)
    walk.check(10, 0, PATIENTS=str(patients))
    with (shell / "scored.csv").open() as handle:
        scored = list(csv.DictReader(handle))
    assert len(scored) == len(rows) and all(0 <= float(r["risk"]) <= 1 for r in scored)
    (shell / "scored.csv").unlink()
    with (shell / "export" / "model.onnx").open("ab") as model:
        model.write(b"x")
    proc = walk.run(10, 0, PATIENTS=str(patients))
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.count("\n") == 1 and "differs from model.sha256" in proc.stderr
    assert proc.stderr.startswith("lhsfed predict: error: ") and not (shell / "scored.csv").exists()
