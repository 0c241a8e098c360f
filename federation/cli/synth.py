"""``lhsfed synth``: write synthetic non-IID hospitals (Parquet) and a dataset spec for them.

The spec goes to ``OUT/data/NAME.yaml``, a Hydra ``data`` group folder, so training on the
cohort needs no code:  lhsfed-train --config-dir OUT data=NAME federation.data_dir=OUT
The generator (numpy, pandas) is imported when the command runs, not when ``lhsfed`` starts.
"""

from __future__ import annotations

import io
import math
from pathlib import Path
from typing import TYPE_CHECKING

from federation.core.atomic import write_bytes
from federation.core.errors import ConfigError
from federation.core.input_files import require_output_folder

if TYPE_CHECKING:
    import pandas as pd

    from federation.modeler.synth import CohortOptions


def _write_parquet(frame: pd.DataFrame, path: Path) -> None:
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    write_bytes(path, buffer.getvalue())


def write_cohorts(
    out: Path,
    *,
    sites: int,
    rows: int,
    heterogeneity: float,
    seed: int,
    name: str,
    single_file: bool = False,
    options: CohortOptions | None = None,
    shift: dict[str, float] | None = None,
    subgroups: bool = False,
) -> Path:
    """Generate hospital by hospital (memory of one at a time); returns the spec's path.

    ``options``: how hard the cohort is (default ``CohortOptions()``, the original generator).
    """
    import pandas as pd
    import yaml

    from federation.modeler.synth import CohortOptions, cohorts, dataset_spec

    options = CohortOptions() if options is None else options
    subgroups = subgroups or options.subgroup_shift != 1.0
    files, names, frames = {}, [], []
    try:
        for site, frame in cohorts(sites, rows, heterogeneity, seed, options, shift=shift):
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
        spec = dataset_spec(
            name,
            file=f"{name}.parquet",
            sites=names,
            noise_features=options.noise_features,
            subgroups=subgroups,
        )
    else:
        spec = dataset_spec(name, files, noise_features=options.noise_features, subgroups=subgroups)
    spec_path = out / "data" / f"{name}.yaml"
    header = (
        f"# Synthetic cohort: lhsfed synth --sites {sites} --rows {rows} "
        f"--heterogeneity {heterogeneity} --seed {seed}{option_flags(options)}"
        f"{''.join(f' --shift {k}={v}' for k, v in sorted((shift or {}).items()))}\n"
    )
    write_bytes(spec_path, (header + yaml.safe_dump(spec, sort_keys=False)).encode())
    return spec_path


# CohortOptions field -> command-line flag (the spec header records the non-default ones).
FLAGS = {
    "prevalence": "--prevalence",
    "signal": "--signal",
    "missing": "--missing",
    "informative_missing": "--informative-missing",
    "noise_features": "--noise-features",
    "min_rows": "--min-site-rows",
    "max_rows": "--max-site-rows",
    "subgroup_shift": "--subgroup-shift",
}


def option_flags(options: CohortOptions) -> str:
    """The flags that rebuild ``options`` (empty for the defaults)."""
    from federation.modeler.synth import CohortOptions

    default = CohortOptions()
    return "".join(
        f" {flag} {getattr(options, field)}"
        for field, flag in FLAGS.items()
        if getattr(options, field) != getattr(default, field)
    )


def options_from(args) -> CohortOptions:
    from federation.modeler.synth import CohortOptions

    options = CohortOptions(**{field: getattr(args, field) for field in FLAGS})
    if options.problems():
        raise ConfigError("; ".join(options.problems()))
    return options


def _refuse_overwrite(out: Path, args) -> None:
    """Files an earlier synth (or anyone) left in ``out`` are kept unless ``--force``."""
    from federation.modeler.synth import site_names

    files = (
        [f"{args.name}.parquet"]
        if args.single_file
        else [f"{site}.parquet" for site in site_names(max(args.sites, 0))]
    )
    taken = [p for p in (out / f for f in [*files, f"data/{args.name}.yaml"]) if p.exists()]
    if taken:
        more = f" (and {len(taken) - 1} more)" if len(taken) > 1 else ""
        raise ConfigError(
            f"--out {out}: {taken[0]} already exists{more}; give an empty folder, or --force to overwrite"
        )


def shift_of(items: list[str] | None) -> dict[str, float]:
    """``--shift SITE=SD`` (repeatable) -> {site: SDs}."""
    shift = {}
    for item in items or []:
        site, _, sds = item.partition("=")
        try:
            shift[site.strip()] = float(sds)
        except ValueError:
            raise ConfigError(f"--shift {item!r}: write SITE=SD, e.g. --shift hospital_002=1.0") from None
        if not site.strip() or not math.isfinite(shift[site.strip()]):
            raise ConfigError(f"--shift {item!r}: write SITE=SD, e.g. --shift hospital_002=1.0")
    return shift


def run(args) -> int:
    if args.sites < 2:
        raise ConfigError(f"--sites must be at least 2 (got {args.sites})")
    if not 0.0 <= args.heterogeneity <= 1.0:
        raise ConfigError(f"--heterogeneity must be in [0, 1] (got {args.heterogeneity})")
    options = options_from(args)  # every bad option before anything is written
    shift_of(args.shift)
    out = require_output_folder(Path(args.out), option="--out")
    if not args.force:
        _refuse_overwrite(out, args)
    spec_path = write_cohorts(
        out,
        sites=args.sites,
        rows=args.rows,
        heterogeneity=args.heterogeneity,
        seed=args.seed,
        name=args.name,
        single_file=args.single_file,
        options=options,
        shift=shift_of(args.shift),
        subgroups=args.subgroups,
    )
    print(f"wrote {args.sites} hospitals ({args.rows} rows) and {spec_path}")
    print(
        f"train: lhsfed-train --config-dir {out.resolve()} data={args.name} "
        f"federation.data_dir={out.resolve()}"
    )
    return 0


def register(subparsers) -> None:
    parser = subparsers.add_parser("synth", help="write synthetic non-IID hospitals for scale tests")
    parser.add_argument("--sites", type=int, required=True, help="number of hospitals")
    parser.add_argument("--rows", type=int, required=True, help="total rows over all hospitals")
    parser.add_argument(
        "--heterogeneity",
        type=float,
        default=0.5,
        help="0 = identical hospitals, 1 = very different (default 0.5)",
    )
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--name", default="synth", help="dataset (spec) name (default synth)")
    parser.add_argument(
        "--single-file",
        action="store_true",
        help="one multi-centre file with a 'hospital' column instead of one per site",
    )
    parser.add_argument(
        "--force", action="store_true", help="overwrite the hospitals' files and spec already in --out"
    )
    parser.add_argument(
        "--subgroups",
        action="store_true",
        help="mark sex, diabetes and age bands (<40, 40-64, >=65) as subgroups in the spec",
    )
    hard = parser.add_argument_group("how hard the cohort is (defaults: the original generator)")
    hard.add_argument(
        "--prevalence",
        type=float,
        default=None,
        help="mean outcome rate of a typical hospital, e.g. 0.07 (default about 0.2)",
    )
    hard.add_argument(
        "--signal",
        type=float,
        default=1.0,
        help="scale of the outcome coefficients; < 1 is a weaker signal (default 1)",
    )
    hard.add_argument(
        "--missing",
        type=float,
        default=1.0,
        help="scale of every value's missing rate, capped at 95%% (default 1)",
    )
    hard.add_argument(
        "--informative-missing",
        dest="informative_missing",
        type=float,
        default=0.0,
        help="logit shift per sd of severity by which healthier patients' values go "
        "unrecorded more often: missing flags carry signal (default 0: at random)",
    )
    hard.add_argument(
        "--noise-features",
        dest="noise_features",
        type=int,
        default=0,
        help="extra numeric columns unrelated to the outcome (default 0)",
    )
    hard.add_argument(
        "--min-site-rows",
        dest="min_rows",
        type=int,
        default=60,
        help="fewest rows a hospital gets (default 60)",
    )
    hard.add_argument(
        "--max-site-rows",
        dest="max_rows",
        type=int,
        default=None,
        help="most rows a hospital gets (default: no bound)",
    )
    parser.add_argument(
        "--shift",
        action="append",
        metavar="SITE=SD",
        help="move one hospital's numeric features by SD standard deviations (a changed case "
        "mix for lhsfed drift); repeatable; every other hospital is drawn as without it",
    )
    hard.add_argument(
        "--subgroup-shift",
        dest="subgroup_shift",
        type=float,
        default=1.0,
        help="scale of the outcome logit's spread inside diabetes = 1 (default 1: none); "
        "the model fitted to all is miscalibrated there; implies --subgroups",
    )
    parser.set_defaults(func=run)
