"""The heavy libraries both apps use, imported once, whole, before either app's own modules.

Flower's simulation runtime (``flwr run`` on a simulation SuperLink) loads the ServerApp in
one thread while it loads the ClientApp in another. Two threads importing the same
libraries' submodules in different orders can trip Python's import deadlock guard, which hands
one of them a partially initialized module: a full-suite run once failed with "cannot import
name 'clone' from partially initialized module 'sklearn.base'". Both app modules import this
one first: the second thread then waits on this module's lock until every library below is
complete.
"""

from __future__ import annotations

import numpy  # noqa: F401
import opacus  # noqa: F401
import pandas  # noqa: F401
import sklearn.base  # noqa: F401
import sklearn.linear_model  # noqa: F401
import sklearn.metrics  # noqa: F401
import torch  # noqa: F401
