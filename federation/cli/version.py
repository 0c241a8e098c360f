"""``lhsfed version``: print this project's version and the pinned framework versions."""

from __future__ import annotations

from importlib.metadata import version


def run(_args) -> int:
    import federation

    print(
        f"lhs-federation {federation.__version__} (flwr {version('flwr')}, "
        f"torch {version('torch')}, opacus {version('opacus')})"
    )
    return 0


def register(subparsers) -> None:
    parser = subparsers.add_parser("version", help="print versions")
    parser.set_defaults(func=run)
