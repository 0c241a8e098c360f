"""``lhsfed predict MODEL --data CSV --out CSV``: score patients locally with an exported model.

The CSV needs a header row naming the model card's input columns (other columns are kept
and passed through); the output is the same rows with a ``risk`` column added. A model file
whose SHA-256 is not the card's is refused before it is loaded.
"""

from __future__ import annotations

from pathlib import Path

MODEL_CARD = "model_card.json"  # federation.model_card.MODEL_CARD, not imported: fast CLI


def run(args) -> int:
    from federation.model_card import read_card, verified_model_bytes
    from federation.scoring import score_csv

    card_path = args.card or Path(args.model).parent / MODEL_CARD
    card = read_card(card_path)
    model = verified_model_bytes(Path(args.model), card, card_path)  # before anything loads it
    rows = score_csv(model, card, Path(args.data), Path(args.out))
    print(f"scored {rows} rows -> {args.out}")
    return 0


def register(subparsers) -> None:
    parser = subparsers.add_parser("predict", help="score a CSV of patients with an exported model")
    parser.add_argument("model", help="exported model file (model.pt or model.onnx)")
    parser.add_argument("--data", required=True, help="CSV with a header row of the card's columns")
    parser.add_argument("--out", required=True, help="CSV to write (input rows plus 'risk')")
    parser.add_argument("--card", type=Path, default=None,
                        help=f"model card (default: {MODEL_CARD} beside the model)")
    parser.set_defaults(func=run)
