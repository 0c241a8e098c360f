"""``lhsfed export RUN_DIR --format torchscript|onnx``: a model file a hospital can score with.

Writes the model (preprocessing baked in) and ``model_card.json``, which holds the model
file's SHA-256 (``lhsfed predict`` checks it), into ``--out`` (default ``RUN_DIR/export``).
The card's metrics come from ``evaluation.json`` when it scored the same round; otherwise
the run is evaluated first (simulation), which also writes the reports. At a site,
``--personalized FILE`` exports the site's own adaptation of the model (``personalize=``),
which then scores with ``lhsfed predict`` as any export does.
"""

from __future__ import annotations

from pathlib import Path

from federation.cli.evaluate import add_run_arguments
from federation.core.errors import ConfigError
from federation.core.run_layout import (
    EVALUATION,
    EXPORT,
    EXPORTED_MODELS,
    MODEL_CARD,
    read_json,
)

FORMATS = tuple(sorted(EXPORTED_MODELS))


def _evaluation_for(run_dir: Path, round_number: int) -> dict:
    from federation.cli.evaluate import evaluate_to_folder

    evaluation = read_json(run_dir / EVALUATION)
    if evaluation is not None and evaluation.get("round") == round_number:
        return evaluation
    return evaluate_to_folder(run_dir, round_number=round_number)


def _out_dir(out_dir: Path, fmt: str, run_files: list[Path]) -> Path:
    """``--out``: a folder, and not one where the export would replace the run's model.pt."""
    from federation.core.input_files import require_output_folder, same_file

    out_dir = require_output_folder(Path(out_dir), option="--out")
    if any(same_file(out_dir / EXPORTED_MODELS[fmt], f) for f in run_files):
        raise ConfigError(
            f"--out {out_dir}: exporting there would overwrite the run's "
            f"{EXPORTED_MODELS[fmt]}; give another folder (default RUN_DIR/export)"
        )
    return out_dir


def export_run(
    run_dir: Path,
    fmt: str,
    *,
    round_number: int | None = None,
    out_dir: Path | None = None,
    personalized: Path | None = None,
) -> tuple[Path, Path]:
    """Export a run's global model (or, with ``personalized``, a site's own adaptation of it:
    federation.modeler.personalized_export); returns (model file, model card)."""
    from federation.core import atomic
    from federation.modeler.export import export_model
    from federation.modeler.model_card import build_card
    from federation.modeler.run_loader import (
        load_saved_model,
        load_settings,
        saved_model_path,
    )

    run_dir = Path(run_dir)
    source = saved_model_path(run_dir, round_number)
    out_dir = _out_dir(out_dir or run_dir / EXPORT, fmt, [source, run_dir / source.name])
    checkpoint = load_saved_model(source)
    evaluation = _evaluation_for(run_dir, checkpoint.round)
    settings = load_settings(run_dir)
    note = None
    if personalized is not None:
        from federation.modeler.personalized_export import personalized_checkpoint

        checkpoint, note = personalized_checkpoint(checkpoint, settings, Path(personalized))
    model_path = export_model(checkpoint.model, checkpoint.dataset, fmt, out_dir)
    card = build_card(checkpoint, settings, evaluation, fmt=fmt, model_file=model_path)
    if note is not None:
        card["personalized"] = note
    atomic.write_json(out_dir / MODEL_CARD, card)
    return model_path, out_dir / MODEL_CARD


def run(args) -> int:
    model_path, card_path = export_run(
        Path(args.run_dir),
        args.format,
        round_number=args.round,
        out_dir=args.out,
        personalized=args.personalized,
    )
    print(f"wrote {model_path} and {card_path}")
    return 0


def register(subparsers) -> None:
    parser = subparsers.add_parser("export", help="export the global model with its model card")
    add_run_arguments(parser)
    parser.add_argument(
        "--format", default="torchscript", choices=FORMATS, help="model format: torchscript (default) or onnx"
    )
    parser.add_argument("--out", type=Path, default=None, help="output folder (default RUN_DIR/export)")
    parser.add_argument(
        "--personalized",
        type=Path,
        default=None,
        help="at a site: its personalized model of this run (personalize=..., kept beside its "
        "ledger in <ledger>-state/personalized/) instead of the global one",
    )
    parser.set_defaults(func=run)
