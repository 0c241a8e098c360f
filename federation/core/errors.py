"""One error hierarchy for the project, so entry points can print one clear line.

Every message names the file, key or value at fault and says how to fix it.
"""


class LhsFedError(Exception):
    """Base class: an error the user can fix, printed without a traceback."""


class ConfigError(LhsFedError, ValueError):
    """A configuration value is missing, of the wrong type or out of range."""


class DataError(LhsFedError, ValueError):
    """A site's data file is missing, unreadable or does not match the task schema."""


class FederationError(LhsFedError, RuntimeError):
    """The federation cannot go on (e.g. no site could answer); the message says why."""


class AbsentSitesError(FederationError):
    """Some site never trained a round of a run that did not accept that (``allow_absent_sites``)."""

    exit_code = 3  # lhsfed-train's exit status: the run finished, without every site


class PrivacyBudgetError(LhsFedError):
    """Training would spend more privacy budget than the site allows."""


def collect_then_raise(problems: list[str], error_type: type[LhsFedError]) -> None:
    """Raise ``error_type`` once with every problem found, if there are any."""
    if problems:
        raise error_type("; ".join(problems))
