"""Centralized baseline for (b): all sites' training rows pooled in one process.

Same model, batch, optimizer and epochs as the federation; evaluates on the pooled test rows
after each epoch as the federation does each round. Prints per-epoch seconds as JSON.
``python -m benchmarks.central --config-dir DIR --data NAME --epochs R [--dp]``
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
import yaml

from client.training import train_locally
from federation.core.data import load_site, site_file
from federation.core.dataspec import parse_dataset_spec
from federation.core.feature_stats import feature_statistics
from federation.core.metrics import risk_metrics
from federation.core.model import ModelSpec, build_model, predict_risk
from federation.core.settings import PrivacySettings, TrainSettings


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--config-dir", required=True)
    parser.add_argument("--data", required=True)
    parser.add_argument("--epochs", type=int, required=True)
    parser.add_argument("--batch-size", type=int, default=256)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)  # as each simulated client
    folder = Path(args.config_dir)
    spec = parse_dataset_spec(yaml.safe_load((folder / "data" / f"{args.data}.yaml").read_text()))
    sites = [load_site(site_file(spec, s, folder), spec, s) for s in spec.site_names]
    x = np.concatenate([s.x_train for s in sites])
    y = np.concatenate([s.y_train for s in sites])
    x_test, y_test = np.concatenate([s.x_test for s in sites]), np.concatenate([s.y_test for s in sites])
    model = build_model(ModelSpec("mlp", n_features=x.shape[1]), seed=42)
    model.preprocess.set_statistics(*feature_statistics(x))
    train = TrainSettings(local_epochs=1, batch_size=args.batch_size, lr=0.01, optimizer="adam")
    epochs = []
    for epoch in range(args.epochs):
        start = time.perf_counter()
        train_locally(
            model,
            x,
            y,
            train=train,
            privacy=PrivacySettings(enabled=False),
            noise_multiplier=None,
            seed=epoch,
        )
        auroc = risk_metrics(y_test, predict_risk(model, x_test), resamples=0)["auroc"]
        epochs.append(time.perf_counter() - start)
    print(json.dumps({"epoch_s": epochs, "auroc": auroc, "rows": int(len(y))}))


if __name__ == "__main__":
    main()
