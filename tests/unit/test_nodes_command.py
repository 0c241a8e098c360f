"""``lhsfed nodes`` errors without a SuperLink: one line, exit 2, never a traceback.
(Listing real nodes, and the refusal at the hospital port, are in tests/integration/test_deployment.py.)"""

from __future__ import annotations

from federation.cli.main import main
from federation.security import pki
from tests.helpers.deployment_net import free_port


def test_no_superlink_is_one_line(tmp_path, capsys):
    pki.create_ca(tmp_path)
    port = free_port()
    code = main(["nodes", "--superlink", f"127.0.0.1:{port}", "--ca-cert", str(tmp_path / "ca.pem")])
    out, err = capsys.readouterr()
    assert code == 2 and out == "" and err.count("\n") == 1
    assert err.startswith(
        f"lhsfed nodes: error: listing nodes at 127.0.0.1:{port} failed: cannot connect to 127.0.0.1:{port}"
    )


def test_missing_ca_is_one_line(tmp_path, capsys):
    code = main(["nodes", "--ca-cert", str(tmp_path / "ca.pem")])
    _, err = capsys.readouterr()
    assert code == 2
    assert err == (
        f"lhsfed nodes: error: {tmp_path / 'ca.pem'}: CA certificate not found "
        "(lhsfed pki init writes ca.pem)\n"
    )
