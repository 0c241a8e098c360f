"""A real deployment on 127.0.0.1: TLS SuperLink with node authentication, hospitals started
through docker/entrypoint-supernode.sh, runs submitted by ``lhsfed-train federation=deployment``.

One network serves every test here (module scope), and it is docs/deployment.md's
walk-through: its ```bash blocks run in order (tests/helpers/walkthrough.py) for the coordinator and
the two hospitals cleveland and hungary; the test adds a guarded node and a registered site
whose node never starts, then follows the doc's run, evaluation, node kill and capped site.
"""

from __future__ import annotations

import re
import subprocess
import time

import pytest
from flwr.common.constant import HEARTBEAT_DEFAULT_INTERVAL, HEARTBEAT_PATIENCE

from client.ledger import SiteLedger
from client.node_identity import NodeIdentity
from federation.cli.main import main
from federation.coordinator.flwr_connection import CONTROL_HINT
from federation.core.records import read_rounds
from federation.security import pki
from tests.helpers.deployment_net import BIN, Network, start
from tests.helpers.runs import LAUNCHER, read_json
from tests.helpers.walkthrough import GUARDED, SITES, WAITING

pytestmark = pytest.mark.slow
N_TEST = {"cleveland": 91, "hungary": 89}  # their test splits (configs/data/uci_heart.yaml)
CAPPED = "switzerland"  # joins last with a cap it reaches in its first round
# How long the SuperLink counts a SIGKILLed node online: HEARTBEAT_PATIENCE heartbeat
# intervals after its last heartbeat (flwr/server/superlink/linkstate/sql_linkstate.py).
REFUSAL_WINDOW_S = HEARTBEAT_PATIENCE * HEARTBEAT_DEFAULT_INTERVAL
# Step 5's planned rounds. Its run stops early, after round 2 unless round 2's validation release
# is better than round 1's by more than 1.645 standard errors of their difference (se ≈ 1.2 at
# these two ~40-patient validation splits against a true gain of a few hundredths: ≤ ~5 % if
# the errors are honest) and, to reach round 4, round 3's again (≤ ~0.3 % for both): see
# tests/unit/test_early_stopping_noise.py, where 40 of 40 such runs stop after round 2.
WALK_ROUNDS = 4
# A round's console line (server/progress.py round_line): its validation loss ± standard error.
ROUND_LINE = re.compile(rf"round\s+(\d+)/{WALK_ROUNDS}\s.*?val loss (\d+\.\d{{4}}) ±(\d+\.\d{{2}})")


def _overrides(net: Network, *extra: str) -> list[str]:
    return [
        "federation=deployment",
        f"superlink={net.control_address}",
        f"federation.ca_cert={net.ca_cert}",
        "federation.timeout=600",
        "rounds=2",
        # the shared network's guarded node refuses every app: it sits out of every run
        "allow_absent_sites=true",
        *extra,
    ]


@pytest.fixture(scope="module")
def network(deployment_network):
    return deployment_network


@pytest.fixture(scope="module")
def first_run_console(network):
    """Step 5's run, as the doc writes it: its folder and what ``lhsfed-train`` printed."""
    run = network.root / "runs" / "first"
    proc = network.walk.run(5, 1, timeout=700, RUN=str(run), ROUNDS=str(WALK_ROUNDS))
    out = proc.stdout + proc.stderr
    assert f"round   1/{WALK_ROUNDS}" in out  # progress streamed back from the SuperLink
    # The shared network also holds the guarded node, which refuses this app every round: the
    # run says so and exits 3 (the doc's two hospitals alone would exit 0).
    guarded = network.node_ids[GUARDED]
    assert proc.returncode == 3 and f"never trained: node {guarded}" in out, out[-3000:]
    return run, out


@pytest.fixture(scope="module")
def first_run(first_run_console):
    return first_run_console[0]


def test_walkthrough_lhsfed_nodes_shows_both_hospitals_online(network):
    lines = [line.split() for line in network.walk.check(5, 0).splitlines()]
    assert lines[0] == ["SITE", "NODE", "ID", "STATUS"]
    assert {(line[0], line[-1]) for line in lines[1:]} >= {(site, "online") for site in SITES}


def test_walkthrough_evaluate_reports_the_two_sites_own_evaluation(network, first_run):
    """Step 5: ``lhsfed evaluate RUN`` reports exactly the sites that evaluated, with their
    own test rows, from metrics.jsonl (never the coordinator's copy of the data)."""
    out = network.walk.check(5, 2, timeout=300, RUN=str(first_run))
    lines = [line.split() for line in out.splitlines() if line.startswith("  ")]
    reported = {cells[0]: cells[-1] for cells in lines if cells[0] != "pooled" and cells[-1].startswith("n=")}
    assert reported == {site: f"n={n}" for site, n in N_TEST.items()}
    selected = read_json(first_run / "summary.json")["selection"]["round"]
    tested = next(r for r in read_rounds(first_run) if r["round"] == selected)["evaluate"]["sites"]
    assert {site: tested[site]["n_test"] for site in SITES} == N_TEST


def test_walkthrough_run_shows_a_validation_loss_every_round_and_stops_early(first_run_console):
    """Step 5: every round's line has the pooled validation loss ± its standard error, as in
    metrics.jsonl; the run stops before its last planned round with the stop line, and
    summary.json, metrics.jsonl and the sites' unspent ε agree."""
    run, out = first_run_console
    rounds, summary = read_rounds(run), read_json(run / "summary.json")
    selection = summary["selection"]
    shown = {int(m[1]): (float(m[2]), float(m[3])) for m in ROUND_LINE.finditer(out)}
    taken = [r["round"] for r in rounds]
    assert sorted(shown) == taken == list(range(1, summary["rounds"] + 1)), out[-3000:]
    for record in rounds:
        pooled = record["validation"]["pooled"]
        loss, se = shown[record["round"]]
        assert loss == pytest.approx(pooled["loss"], abs=5e-5) and se == pytest.approx(
            pooled["loss_se"], abs=5e-3
        )
        assert se > 0  # a DP release's standard error
    assert selection["stopped_early"] and summary["rounds"] < WALK_ROUNDS == selection["rounds_planned"]
    assert (selection["patience"], selection["improvement"]) == (1, "clear")
    assert selection["round"] in taken
    assert (
        "stopped early: no clearly better (beyond its noise) pooled validation loss for 1 round(s); "
        f"round {selection['round']} of {WALK_ROUNDS} planned is the model handed out"
    ) in out
    assert f"test of round {selection['round']} (handed out)" in out
    for site in SITES:
        assert summary["privacy"]["sites"][site]["unspent_epsilon"] > 0


def test_two_hospitals_train_over_tls(first_run):
    """Step 5's rounds through the entrypoints over TLS; both hospitals train and release their
    validation split every round (a validation loss every round: selection acts), and their
    test split once, for the round handed out."""
    rounds = read_rounds(first_run)
    summary = read_json(first_run / "summary.json")
    assert [r["round"] for r in rounds] == list(range(1, summary["rounds"] + 1))
    for record in rounds:
        assert set(record["train"]) == set(SITES)
        assert set(record["validation"]["sites"]) == set(SITES)
        assert record["validation"]["pooled"]["loss"] is not None
        tested = record["round"] == summary["selection"]["round"]
        assert set(record["evaluate"]["sites"]) == (set(SITES) if tested else set())
    assert summary["selection"]["by_validation"] is True
    assert set(summary["metrics"]["sites"]) == set(SITES)
    assert set(summary["privacy"]["sites"]) == set(SITES)
    assert (first_run / "model.pt").is_file()


def test_node_refuses_an_app_its_trusted_entities_did_not_sign(network, first_run):
    """A node whose trusted entities did not sign the app answers every message with an error."""
    guarded_id = network.node_ids[GUARDED]
    for record in read_rounds(first_run):
        assert GUARDED not in record["train"]
        assert guarded_id in {f["node"] for f in record["failures"]}
    assert "could not be verified" in network.nodes[GUARDED].output()


def test_unregistered_and_plaintext_nodes_are_refused(network):
    """An unregistered node key cannot activate; a plaintext client cannot talk to TLS."""
    rogue = network.start_node("rogue")  # its key was made, never registered
    env = network.node_env("cleveland")
    plain = start(
        [
            str(BIN / "flower-supernode"),
            "--insecure",
            "--superlink",
            network.address,
            "--max-retries",
            "2",
            "--max-wait-time",
            "20",
            "--port",
            env["LHSFED_NODE_PORT"],
            "--node-config",
            "site-name='plain'",
        ],
        env,
        network.root / "plaintext.log",
    )
    network.procs.append(plain)
    for proc in (rogue, plain):
        assert proc.popen.wait(timeout=120) != 0
    assert "Failed to activate SuperNode" in rogue.output()
    assert "could not establish a connection" in plain.output()
    assert len(network.online_nodes()) == 3  # neither joined


def _lhsfed_nodes(capsys, superlink: str, ca_cert) -> tuple[int, list[list[str]], str]:
    code = main(["nodes", "--superlink", superlink, "--ca-cert", str(ca_cert)])
    out, err = capsys.readouterr()
    return code, [line.split() for line in out.splitlines()], err


def test_lhsfed_nodes_lists_sites_by_name_and_status(network, capsys):
    """The coordinator's ``lhsfed nodes`` names each site as it was registered,
    with its node id and status; a registered site whose node never started is ``registered``."""
    code, lines, _ = _lhsfed_nodes(capsys, network.control_address, network.ca_cert)
    assert code == 0 and lines[0] == ["SITE", "NODE", "ID", "STATUS"]
    listed = {site: (int(node_id), status) for site, node_id, status in lines[1:]}
    expected = {site: (network.node_ids[site], "online") for site in (*SITES, GUARDED)}
    assert listed == {**expected, WAITING: (network.node_ids[WAITING], "registered")}


def test_lhsfed_nodes_is_refused_at_the_hospital_port(network, capsys, tmp_path):
    """Attack: holding ca.pem, a hospital (or anyone on its network) asks the proxy for the
    node list: one line, the proxy's refusal, no list. The loopback port above is the control.
    A foreign CA is refused by TLS, with one line too."""
    code, lines, err = _lhsfed_nodes(capsys, network.address, network.ca_cert)
    assert code == 2 and lines == []
    assert err == f"lhsfed nodes: error: listing nodes at {network.address} failed: {CONTROL_HINT}\n"
    pki.create_ca(tmp_path / "foreign")
    code, lines, err = _lhsfed_nodes(capsys, network.control_address, tmp_path / "foreign" / "ca.pem")
    assert code == 2 and lines == [] and err.count("\n") == 1
    assert "TLS verification failed" in err


def _wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        time.sleep(0.5)


def _restart_like_docker(network: Network, site: str, run: subprocess.Popen, killed_at: float):
    """Start the node through its entrypoint again whenever it exits (compose's
    ``restart: unless-stopped``), until it serves a message or the run ends. The SuperLink
    refuses to re-activate a SIGKILLed node's key until its heartbeat has expired, so the
    first restarts exit and a later one gets in. Returns the serving node and each refused
    start as (seconds after the kill it began, exit status, its log)."""
    refused, began = [], time.monotonic() - killed_at
    proc = network.start_node(site, tag="-restarted")
    while run.poll() is None and "Receiving:" not in proc.output():
        if not proc.alive():
            refused.append((began, proc.popen.returncode, proc.output()))
            time.sleep(3)
            began = time.monotonic() - killed_at
            proc = network.start_node(site, tag=f"-restarted{len(refused)}")
        time.sleep(1)
    return proc, refused


def _ledger_entries(network: Network, site: str) -> list:
    """The site's privacy ledger, read through its own class (what the node itself reads)."""
    folder = network.root / "sites" / site
    path = folder / "ledger" / "ledger.sqlite"
    identity = NodeIdentity.of_key(folder / f"{site}.key")
    return SiteLedger(path, identity=identity, site=site).entries() if path.exists() else []


def test_killed_node_round_completes_and_node_rejoins(network, tmp_path):
    """SIGKILL a hospital mid-round: the round ends with the others; the node,
    restarted through its entrypoint, is refused (exit 1) while its heartbeat lasts, then
    rejoins under the same identity; its ledger keeps every
    entry it had and records the round the node trains after rejoining."""
    victim = "hungary"
    node = network.nodes[victim]
    trains_before = node.output().count("Receiving: train message")
    # Three available nodes (the two hospitals and the guarded one, which refuses every app):
    # round 2 then waits for the killed hospital to rejoin instead of starting without it. Its
    # message lives for the round's 60 s (server/exchange.py), and the node is back within
    # about REFUSAL_WINDOW_S + a restart of the kill, which came early in round 1.
    run = subprocess.Popen(
        [
            str(LAUNCHER),
            *_overrides(network, "strategy.min_available_nodes=3", "strategy.round_timeout=60"),
            f"hydra.run.dir={tmp_path / 'run'}",
        ],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _wait_for(
            lambda: run.poll() is not None or node.output().count("Receiving: train message") > trains_before,
            400,
            "the victim never received a train message",
        )
        assert run.poll() is None, "the run ended before the victim trained: " + run.stderr.read()
        ledger = _ledger_entries(network, victim)
        network.walk.check(6, 0, **network.walk.site(victim))  # the doc's kill: node and runner
        _wait_for(lambda: not node.alive(), 30, "the killed node's session is still alive")
        restarted, refused = _restart_like_docker(network, victim, run, time.monotonic())
        out, err = run.communicate(timeout=600)
    finally:
        if run.poll() is None:
            run.kill()
    assert run.returncode == 0, out[-2000:] + err[-3000:]
    first, second = read_rounds(tmp_path / "run")
    assert set(first["train"]) == set(SITES) - {victim}
    assert victim in second["train"]  # rejoined and trained again
    # With two hospitals and min_train_nodes=2, round 1 had one usable
    # update: it is discarded (the global model kept), the console says so and why, and the
    # site that trained was charged for it, as docs/strategies.md says.
    (survivor,) = set(SITES) - {victim}
    assert first["discarded"] and not second["discarded"]
    assert "round 1 discarded" in out and "minimum 2" in out
    assert f"ε still charged at 1 site(s) that trained ({survivor})" in out
    survivor_rounds = [
        e.server_round
        for e in _ledger_entries(network, survivor)
        if e.run == str(tmp_path / "run") and not e.is_release
    ]
    assert survivor_rounds == [1, 2]
    assert "Receiving: train message" in restarted.output()
    # As documented: each refused restart exits 1 (Flower's own code, 305, is in its log) and
    # began while the SuperLink still counted the killed node online.
    assert refused, "the first restart, right after the kill, was not refused"
    for began, status, log in refused:
        assert status == 1 and "Exit Code: 305" in log
        assert "[code: 2004] Failed to activate SuperNode" in log
        assert began < REFUSAL_WINDOW_S
    after = _ledger_entries(network, victim)
    assert after[: len(ledger)] == ledger  # nothing recorded before the kill was lost
    rejoined = [e for e in after[len(ledger) :] if e.run == str(tmp_path / "run") and not e.is_release]
    rounds = [e.server_round for e in rejoined]
    # Round 2 is recorded; round 1 only if the kill came after its spending was written
    # (then it counts, conservatively, though its update never arrived).
    assert 2 in rounds and set(rounds) <= {1, 2}
    assert rejoined[0].epsilon_total >= (ledger[-1].epsilon_total if ledger else 0.0)
    # Not silent: the run's last lines and summary.json name every charge no aggregate used,
    # from the sites' own ledgers: the survivor's discarded round 1 and, if the victim paid for
    # round 1 before it was killed, the victim's (its rejoined reply lists it).
    unused = {survivor: [1], **({victim: [1]} if 1 in rounds else {})}
    summary = read_json(tmp_path / "run" / "summary.json")
    assert summary["privacy"]["charged_not_aggregated"] == unused
    assert summary["privacy"]["unconfirmed"] == {}
    named = "; ".join(f"site {site} round 1" for site in sorted(unused))
    assert f"ε charged for updates no aggregate used: {named} (" in out


def test_capped_site_refuses_and_the_run_completes(network, tmp_path):
    """Step 7: a site whose cap its first round would pass refuses before any step, with its
    line in its own log and the same reason in metrics.jsonl; the others train. A site that
    did not train the round is not asked to evaluate it."""
    walk, run = network.walk, network.root / "runs" / "capped"
    values = walk.site(CAPPED, MAX_EPSILON="0.01")
    network.node_ids[CAPPED] = walk.join(CAPPED, MAX_EPSILON="0.01")
    network.wait_online(4, timeout=240)
    out = walk.check(7, 0, timeout=700, RUN=str(run), ROUNDS="1", **values)
    (record,) = read_rounds(run)
    assert set(record["train"]) == set(SITES)
    refusal = f"site {CAPPED} refuses round 1: ε would reach "
    assert refusal in out and "> cap 0.01 (spent 0" in out  # the doc's grep of site.log
    reasons = [f["reason"] for f in record["failures"]]
    assert any(r.startswith(f"budget refused: {refusal}") for r in reasons)
    assert CAPPED not in record["evaluate"]["sites"]
    assert not [f for f in record["failures"] if f.get("site") == CAPPED and f["stage"] == "evaluate"]
