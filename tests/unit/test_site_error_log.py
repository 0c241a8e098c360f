"""A refusal the site meant is one line on the node's console, its traceback in site.log; a
fault shows its traceback on the console too (an operator must see where it broke)."""

from __future__ import annotations

import logging

from flwr.app import Context, Message, RecordDict

from client.site_errors import SITE_LOG, site_error_mod
from client.site_policy import LEDGER_PATH
from federation.core import wire
from federation.core.errors import PrivacyBudgetError
from tests.helpers.site_nodes import message


def _refusing(err: Exception):
    def handler(msg: Message, context: Context) -> Message:
        raise err

    return handler


def _context(tmp_path) -> Context:
    ledger = tmp_path / "site" / "ledger.sqlite"
    return Context(
        run_id=1, node_id=7, node_config={LEDGER_PATH: str(ledger)}, state=RecordDict(), run_config={}
    )


def test_a_budget_refusal_is_one_console_line_and_a_traceback_in_site_log(tmp_path, caplog):
    caplog.set_level(logging.ERROR, logger="lhsfed.site")
    err = PrivacyBudgetError("no useful budget left of this run's target")

    reply = site_error_mod(message("train", None), _context(tmp_path), _refusing(err))

    assert reply.error.code == wire.BUDGET_REFUSED
    (record,) = caplog.records
    assert record.exc_info is None and "no useful budget left" in record.getMessage()
    assert str(tmp_path / "site" / SITE_LOG) in record.getMessage()
    logged = (tmp_path / "site" / SITE_LOG).read_text()
    assert "Traceback" in logged and "no useful budget left" in logged


def test_a_fault_shows_its_traceback_on_the_console(tmp_path, caplog):
    caplog.set_level(logging.ERROR, logger="lhsfed.site")

    reply = site_error_mod(message("train", None), _context(tmp_path), _refusing(KeyError("x")))

    assert reply.error.code == wire.SITE_ERROR
    (record,) = caplog.records
    assert record.exc_info is not None and record.exc_info[0] is KeyError
    assert "Traceback" in (tmp_path / "site" / SITE_LOG).read_text()
