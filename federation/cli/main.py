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
import re
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


# A module whose distribution has another name (the extras list distributions).
DISTRIBUTION_OF = {"hydra": "hydra-core", "omegaconf": "hydra-core", "sklearn": "scikit-learn"}
EXTRA_REQUIREMENT = re.compile(r"""^([A-Za-z0-9_.-]+)[^;]*;\s*extra\s*==\s*["']([^"']+)["']""")


def _normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def extras_with(module: str) -> list[str]:
    """The extras of the installed lhs-federation that list ``module``'s distribution."""
    from importlib import metadata

    wanted = _normalized(DISTRIBUTION_OF.get(module, module))
    try:
        requirements = metadata.requires("lhs-federation") or []
    except metadata.PackageNotFoundError:
        return []
    found = (EXTRA_REQUIREMENT.match(r) for r in requirements)
    return sorted({m.group(2) for m in found if m and _normalized(m.group(1)) == wanted})


def _missing_extra(err: ModuleNotFoundError) -> str:
    module = (err.name or "").split(".")[0]
    extras = extras_with(module)
    fix = (
        " or ".join(f"pip install 'lhs-federation[{extra}]'" for extra in extras)
        if extras
        else "install the lhs-federation extra that lists it (pyproject.toml, optional-dependencies)"
    )
    return f"this command needs the Python module {module!r}, which is not installed here; {fix}"


def _os_error(err: OSError) -> str:
    """``PATH: reason`` of an OSError, in one line (the path is what the user can fix)."""
    where = " -> ".join(str(f) for f in (err.filename, err.filename2) if f is not None)
    reason = err.strerror or str(err)
    return f"{where}: {reason}" if where else reason


if __name__ == "__main__":
    sys.exit(main())
