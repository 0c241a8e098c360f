"""Load a ``.pt`` file of a run folder without running anything it contains.

``torch.load(weights_only=False)`` unpickles arbitrary objects, and unpickling may call any
function: a crafted ``model.pt`` ran a shell command as the user of ``lhsfed audit``. Every
run-folder file (``model.pt``, ``rounds/round_NNN.pt``, ``checkpoint.pt``) is read here, with
``weights_only=True`` (tensors, numbers, strings and containers only), and any file that does
not load that way is refused with one line naming it.
"""

from __future__ import annotations

import pickle
import re
import warnings
import zipfile
from pathlib import Path
from typing import Any

import torch

from federation.core.errors import DataError

# What torch.load raises on a refused global, a truncated archive or a file that is no archive
# (random bytes also reach the unpickler's own stack: IndexError "pop from empty list").
_LOAD_ERRORS = (
    pickle.UnpicklingError,
    RuntimeError,
    EOFError,
    ValueError,
    OSError,
    zipfile.BadZipFile,
    AttributeError,
    ImportError,
    TypeError,
    KeyError,
    IndexError,
)
_TERMINAL_CODES = re.compile(r"\x1b\[[0-9;]*m")


def _reason(err: Exception) -> str:
    """torch's message in one line: the line that names the refused global, else the first."""
    if not isinstance(err, (pickle.UnpicklingError, RuntimeError, OSError)):
        return f"not a file torch.save wrote: {type(err).__name__} {str(err)[:80]}".rstrip()
    text = _TERMINAL_CODES.sub("", str(err))
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    named = [line for line in lines if "Unsupported" in line]
    reason = (named or lines or [type(err).__name__])[0]
    return reason.split(" Please use ")[0].removeprefix("WeightsUnpickler error: ")


def load_weights_only(path: Path, *, fix: str) -> dict[str, Any]:
    """The dict saved in ``path``, loaded with ``weights_only=True``; else one DataError line.

    ``fix`` says what to do instead (e.g. re-create the file); nothing in a refused file runs.
    """
    path = Path(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # random bytes: "Detected pickle protocol 64 ..."
            payload = torch.load(path, map_location="cpu", weights_only=True)
    except _LOAD_ERRORS as err:
        raise DataError(
            f"{path}: cannot be read safely as plain weights ({_reason(err)}); nothing in it was run; {fix}"
        ) from None
    if not isinstance(payload, dict):
        raise DataError(
            f"{path}: cannot be read as a run file: it holds a "
            f"{type(payload).__name__}, not the dict lhs-federation saves; {fix}"
        )
    return payload
