"""``lhsfed predict MODEL --data CSV --out CSV``: score patients locally with an exported model.

MODEL may be a registry reference (``registry:TASK@champion``, ``registry:TASK/3``): that
version is downloaded and exported as ``lhsfed export`` does (its card from the sites' own
evaluation), then used the same way.

The CSV needs a header row naming the model card's input columns (other columns are kept
and passed through); the output is the same rows with a ``risk`` column added, and beside it
``risk_out_of_range`` (the row's columns outside the card's ranges or levels, ';'-joined) and
``risk_model_sha256`` (the model that scored it). A model file
whose SHA-256 is not the card's is refused before it is loaded. Values outside the card's
ranges or levels are scored with one warning per row (``--strict``: refused). Nothing is
written unless every row was scored, and never over the input.
"""

from __future__ import annotations

import sys
from pathlib import Path

from federation.core.run_layout import MODEL_CARD  # standard library only: the CLI stays fast

SHOWN_WARNINGS = 20  # rows warned about one by one; the rest are counted


def _inputs(args) -> tuple[Path, Path, Path, Path]:
    """(model, card, data, out), each checked before anything is read or written."""
    from federation.core.input_files import require_file, require_output_file

    model = require_file(
        Path(args.model), what="model file", fix="give the model.pt or model.onnx that lhsfed export wrote"
    )
    card = require_file(
        args.card or model.parent / MODEL_CARD,
        what="model card",
        fix="export writes it beside the model (or pass --card)",
    )
    data = require_file(
        Path(args.data),
        what="CSV of patients",
        fix="give --data the CSV to score (a header row of the card's columns)",
    )
    out = require_output_file(
        Path(args.out), option="--out", inputs={"--data": data, "the model": model, "the card": card}
    )
    return model, card, data, out


def _warn(notes: list[str]) -> None:
    for line in notes[:SHOWN_WARNINGS]:
        print(f"warning: {line}", file=sys.stderr)
    if len(notes) > SHOWN_WARNINGS:
        print(
            f"warning: {len(notes) - SHOWN_WARNINGS} more rows with values outside the card's "
            "ranges or levels (--strict refuses them)",
            file=sys.stderr,
        )


def _registry_model(args, folder: Path) -> str:
    """Export the registered version ``args.model`` names into ``folder``; point args at it."""
    from federation.cli.evaluate import evaluate_to_folder
    from federation.cli.export import export_run
    from federation.cli.registry import _quiet_client
    from federation.coordinator.registry import download_run_folder
    from federation.core.run_layout import EVALUATION, read_json
    from federation.modeler.run_loader import load_saved_model

    _quiet_client()
    run_dir = folder / "run"
    resolved = download_run_folder(args.model, args.uri, run_dir)
    selected = load_saved_model(resolved.path).round
    if (read_json(run_dir / EVALUATION) or {}).get("round") != selected:
        # The sites' own evaluation (metrics.jsonl): no patient row is needed to write the card.
        evaluate_to_folder(run_dir, round_number=selected, from_rounds=True)
    model, card = export_run(run_dir, "torchscript", out_dir=folder / "export")
    args.model, args.card = str(model), card
    return f"{resolved.task} version {resolved.version}"


def run(args) -> int:
    import tempfile

    if str(args.model).startswith("registry:"):
        with tempfile.TemporaryDirectory(prefix="lhsfed-predict-") as folder:
            used = _registry_model(args, Path(folder))
            return _score(args, f" with {used}")
    return _score(args, "")


def _score(args, used: str) -> int:
    from federation.modeler.model_card import read_card, verified_model_bytes
    from federation.modeler.scoring import check_card, score_csv

    model_path, card_path, data, out = _inputs(args)
    card = read_card(card_path)
    check_card(card, card_path)
    model = verified_model_bytes(model_path, card, card_path)  # before anything loads it
    rows, notes = score_csv(model, card, data, out, strict=args.strict, source=str(model_path))
    _warn(notes)
    extra = f" ({len(notes)} with out-of-range values)" if notes else ""
    print(f"scored {rows} rows{used} -> {out}{extra}")
    return 0


def register(subparsers) -> None:
    parser = subparsers.add_parser("predict", help="score a CSV of patients with an exported model")
    parser.add_argument(
        "model", help="exported model file (model.pt or model.onnx), or registry:TASK@ALIAS / registry:TASK/N"
    )
    parser.add_argument("--data", required=True, help="CSV with a header row of the card's columns")
    parser.add_argument(
        "--out",
        required=True,
        help="CSV to write (input rows plus 'risk', 'risk_out_of_range', 'risk_model_sha256')",
    )
    parser.add_argument(
        "--card",
        type=Path,
        default=None,
        help="model card (default: the one lhsfed export wrote beside the model)",
    )
    parser.add_argument(
        "--strict",
        action="store_true",
        help="refuse values outside the card's ranges or levels (default: warn)",
    )
    parser.add_argument(
        "--uri",
        default="sqlite:///lhsfed-registry.db",
        help="the MLflow registry URI, for a registry:... model (default sqlite:///lhsfed-registry.db)",
    )
    parser.set_defaults(func=run)
