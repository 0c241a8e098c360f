"""Which Flower apps a simulated federation runs, named as "module:attr" (as Flower names them).

The ServerApp is always the project's; the ClientApp is the hospital's unless a test names
another (``tests/helpers/faulty_client.py``): the choice is the coordinator's, made where the
simulation starts, so the hospital's ClientApp carries no switch of its own.
"""

from __future__ import annotations

import importlib

from federation.core.errors import ConfigError

CLIENT_APP = "client.app:app"  # the hospital's ClientApp
SERVER_APP = "server.app:app"


def load_app(reference: str, key: str = "federation.client_app"):
    """The object ``reference`` ("module:attr") names; a bad reference is one line naming ``key``."""
    module, _, attr = reference.partition(":")
    try:
        return getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError, ValueError) as err:
        raise ConfigError(
            f"{key} {reference!r} cannot be loaded ({err}); give module:attribute "
            f"of a ClientApp, e.g. {CLIENT_APP!r}"
        ) from None
