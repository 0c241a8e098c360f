"""What a site says when it will not or cannot answer: a code and a category, never data.

An exception's text can hold a cell value, an identifier or a path (a failing spec once
listed ten patient names and an MRN); Flower would send it to the coordinator verbatim. The
outermost client mod, :func:`site_error_mod`, turns every exception into an error reply
whose reason is a fixed category plus only what the site chose to say (a refusal's ε
numbers, the spec key that differs, the number of data problems), and writes the full
details, traceback included, to the site's own log (``site.log`` beside the ledger; a
simulated site's is in the simulated ledgers' folder). The node's console gets one line for a
refusal the site meant (budget, spec, config, data) and the traceback only for a fault. A
deployed site's log never goes under a folder the run config names.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from flwr.app import Context, Error, Message

from client.node_identity import LedgerError
from client.site_policy import LEDGER_DIR_ENV, LEDGER_PATH, is_deployed
from client.site_spec import SpecMismatch
from federation.core import wire
from federation.core.errors import (
    ConfigError,
    DataError,
    LhsFedError,
    PrivacyBudgetError,
)
from federation.core.run_layout import LEDGERS

log = logging.getLogger("lhsfed.site")
SITE_LOG = "site.log"


class RunConfigError(ConfigError):
    """The coordinator's run config is invalid: its own values may be echoed back."""


class EvaluationRefused(LhsFedError):
    """The site will not evaluate (its test split is too small to release metrics)."""


def _category(err: BaseException) -> tuple[int, str]:
    """(code, reason that may leave the site) for an exception."""
    if isinstance(err, LedgerError):
        return wire.BUDGET_REFUSED, f"budget refused: privacy ledger not trusted: {err.public}"
    if isinstance(err, PrivacyBudgetError):  # ε numbers and the site's rule, no data
        return wire.BUDGET_REFUSED, f"budget refused: {err}"
    if isinstance(err, SpecMismatch):
        return wire.SPEC_MISMATCH, f"spec mismatch: {err}"
    if isinstance(err, RunConfigError):
        return wire.RUN_CONFIG_REFUSED, f"run config refused: {err}"
    if isinstance(err, EvaluationRefused):
        return wire.EVALUATION_REFUSED, f"evaluation refused: {err}"
    if isinstance(err, DataError):
        problems = str(err).count("; ") + 1
        return wire.DATA_CHECK_FAILED, f"data check failed: {problems} problem{'s' * (problems > 1)}"
    if isinstance(err, ConfigError):
        return wire.SITE_CONFIG_ERROR, "site configuration error"
    return wire.SITE_ERROR, f"site error ({type(err).__name__})"


def _log_file(context: Context) -> Path | None:
    """``site.log`` beside the ledger; a deployed node without ``ledger-path`` logs to its
    console only (None); a simulated one into the simulated sites' ledger folder."""
    ledger = context.node_config.get(LEDGER_PATH)
    if ledger:
        return Path(str(ledger)).parent / SITE_LOG
    try:
        deployed = is_deployed(dict(context.node_config))
    except ConfigError:
        deployed = True  # an unknown mode is not simulation
    if deployed:
        return None
    folder = os.environ.get(LEDGER_DIR_ENV)
    if folder:
        return Path(folder) / SITE_LOG
    run_dir = context.run_config.get("run.output_dir")
    return Path(str(run_dir)) / LEDGERS / SITE_LOG if run_dir else None


def _expected(err: BaseException) -> bool:
    """A refusal the site meant (budget, spec, config, data, evaluation): one console line.
    Anything else is a fault whose traceback the console shows too."""
    return isinstance(err, LhsFedError)


def _log_locally(context: Context, message: Message, err: BaseException) -> None:
    log.error(
        "%s message refused: %s%s",
        message.metadata.message_type,
        err,
        f" (details in {_log_file(context) or 'this log'})" if _expected(err) else "",
        exc_info=None if _expected(err) else err,
    )
    path = _log_file(context)
    if path is None:
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handler = logging.FileHandler(path)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        record = log.makeRecord(
            log.name,
            logging.ERROR,
            __file__,
            0,
            "%s message refused: %s",
            (message.metadata.message_type, err),
            (type(err), err, err.__traceback__),
        )
        handler.emit(record)
        handler.close()
    except OSError:
        pass  # the console line above is the record then


def error_reply(message: Message, context: Context, err: BaseException) -> Message:
    """Log ``err`` in full at the site and answer with its code and category only."""
    _log_locally(context, message, err)
    code, reason = _category(err)
    if code in (wire.DATA_CHECK_FAILED, wire.SITE_CONFIG_ERROR, wire.SITE_ERROR):
        reason += " (details in the site's log)"
    return Message(Error(code=code, reason=reason), reply_to=message)


def site_error_mod(message: Message, context: Context, call_next) -> Message:
    """Outermost mod: no exception text ever leaves the site."""
    try:
        return call_next(message, context)
    except Exception as err:  # noqa: BLE001 - every failure becomes a categorized reply
        return error_reply(message, context, err)
