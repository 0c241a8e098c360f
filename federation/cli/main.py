"""``lhsfed``: the command-line tools for hospital IT, coordinators and modelers.

Each subcommand lives in its own module exposing ``register(subparsers)``; the module sets
``func`` on its parser and imports its layer inside it, so the help is fast. Errors the user
can fix print one line and exit 2; so does an operating-system error on a path (permission
denied, a full disk), named with its path, and a command whose extra is not installed (a
hospital installs the base package only).
"""

from __future__ import annotations

import argparse
import importlib
import sys

OWN_PACKAGES = ("federation", "client", "server", "strategies")
# One module per subcommand (added as each lands).
COMMAND_MODULES = (
    "federation.cli.version",
    "federation.cli.evaluate",
    "federation.cli.export",
    "federation.cli.predict",
    "federation.cli.audit",
    "federation.cli.synth",
    "federation.cli.pki",
    "federation.cli.site",
    "federation.cli.nodes",
    "federation.cli.registry",
    "federation.cli.compare",
    "federation.cli.promote",
    "federation.cli.drift",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lhsfed", description=__doc__.splitlines()[0])
    subparsers = parser.add_subparsers(dest="command", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    from federation.core.errors import LhsFedError

    args = _parse(build_parser(), argv)
    try:
        return int(args.func(args) or 0)
    except LhsFedError as err:
        print(f"lhsfed {args.command}: error: {err}", file=sys.stderr)
        return 2
    except ModuleNotFoundError as err:
        if (err.name or "").split(".")[0] in OWN_PACKAGES:
            raise  # a bug of ours, not a missing extra
        print(f"lhsfed {args.command}: error: {_missing_extra(err)}", file=sys.stderr)
        return 2
    except OSError as err:
        print(f"lhsfed {args.command}: error: {_os_error(err)}", file=sys.stderr)
        return 2


def _parse(parser: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    """Arguments; a command with Hydra ``overrides`` takes them after its options too
    (``lhsfed compare TASK --out DIR federation.runtime=inprocess``: argparse alone would not)."""
    args, extra = parser.parse_known_args(argv)
    if extra and hasattr(args, "overrides") and not any(e.startswith("-") for e in extra):
        args.overrides = [*args.overrides, *extra]
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    return args


def _missing_extra(err: ModuleNotFoundError) -> str:
    return (
        f"this command needs the Python module {err.name!r}, which is not installed here; "
        "install the extra that has it: pip install 'lhs-federation[modeler]' (evaluate, "
        "export, predict, audit) or 'lhs-federation[coordinator]' (the coordinator's tools)"
    )


def _os_error(err: OSError) -> str:
    """``PATH: reason`` of an OSError, in one line (the path is what the user can fix)."""
    where = " -> ".join(str(f) for f in (err.filename, err.filename2) if f is not None)
    reason = err.strerror or str(err)
    return f"{where}: {reason}" if where else reason


if __name__ == "__main__":
    sys.exit(main())
