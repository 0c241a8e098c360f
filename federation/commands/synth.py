"""``lhsfed synth``: write synthetic non-IID hospitals (Parquet) and a dataset spec for them.

The spec goes to ``OUT/data/NAME.yaml``, a Hydra ``data`` group folder, so training on the
cohort needs no code:  lhsfed-train --config-dir OUT data=NAME federation.data_dir=OUT
"""

from __future__ import annotations

import io
from pathlib import Path

import pandas as pd
import yaml

from federation.atomic import write_bytes
from federation.errors import ConfigError
from federation.input_files import require_output_folder
from federation.synth import cohorts, dataset_spec, site_names



def _write_parquet(frame: pd.DataFrame, path: Path) -> None:
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    write_bytes(path, buffer.getvalue())


def write_cohorts(out: Path, *, sites: int, rows: int, heterogeneity: float, seed: int,
                  name: str, single_file: bool = False) -> Path:
    """Generate hospital by hospital (memory of one at a time); returns the spec's path."""
    files, names, frames = {}, [], []
    try:
        for site, frame in cohorts(sites, rows, heterogeneity, seed):
            names.append(site)
            if single_file:
                frames.append(frame)
            else:
                files[site] = f"{site}.parquet"
                _write_parquet(frame, out / files[site])
    except ValueError as err:
        raise ConfigError(str(err)) from None  # the CLI adds "lhsfed synth: error:"
    if single_file:
        _write_parquet(pd.concat(frames, ignore_index=True), out / f"{name}.parquet")
        spec = dataset_spec(name, file=f"{name}.parquet", sites=names)
    else:
        spec = dataset_spec(name, files)
    spec_path = out / "data" / f"{name}.yaml"
    header = (f"# Synthetic cohort: lhsfed synth --sites {sites} --rows {rows} "
              f"--heterogeneity {heterogeneity} --seed {seed}\n")
    write_bytes(spec_path, (header + yaml.safe_dump(spec, sort_keys=False)).encode())
    return spec_path


def _refuse_overwrite(out: Path, args) -> None:
    """Files an earlier synth (or anyone) left in ``out`` are kept unless ``--force``."""
    files = ([f"{args.name}.parquet"] if args.single_file
             else [f"{site}.parquet" for site in site_names(max(args.sites, 0))])
    taken = [p for p in (out / f for f in [*files, f"data/{args.name}.yaml"]) if p.exists()]
    if taken:
        more = f" (and {len(taken) - 1} more)" if len(taken) > 1 else ""
        raise ConfigError(f"--out {out}: {taken[0]} already exists{more}; give an empty folder, "
                          "or --force to overwrite")


def run(args) -> int:
    if args.sites < 2:
        raise ConfigError(f"--sites must be at least 2 (got {args.sites})")
    if not 0.0 <= args.heterogeneity <= 1.0:
        raise ConfigError(f"--heterogeneity must be in [0, 1] (got {args.heterogeneity})")
    out = require_output_folder(Path(args.out), option="--out")
    if not args.force:
        _refuse_overwrite(out, args)
    spec_path = write_cohorts(out, sites=args.sites, rows=args.rows,
                              heterogeneity=args.heterogeneity, seed=args.seed, name=args.name,
                              single_file=args.single_file)
    print(f"wrote {args.sites} hospitals ({args.rows} rows) and {spec_path}")
    print(f"train: lhsfed-train --config-dir {out.resolve()} data={args.name} "
          f"federation.data_dir={out.resolve()}")
    return 0


def register(subparsers) -> None:
    parser = subparsers.add_parser("synth", help="write synthetic non-IID hospitals for scale tests")
    parser.add_argument("--sites", type=int, required=True, help="number of hospitals")
    parser.add_argument("--rows", type=int, required=True, help="total rows over all hospitals")
    parser.add_argument("--heterogeneity", type=float, default=0.5,
                        help="0 = identical hospitals, 1 = very different (default 0.5)")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--name", default="synth", help="dataset (spec) name (default synth)")
    parser.add_argument("--single-file", action="store_true",
                        help="one multi-centre file with a 'hospital' column instead of one per site")
    parser.add_argument("--force", action="store_true",
                        help="overwrite the hospitals' files and spec already in --out")
    parser.set_defaults(func=run)
