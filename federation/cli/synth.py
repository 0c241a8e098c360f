"""``lhsfed synth``: write synthetic non-IID hospitals (Parquet) and a dataset spec for them.

The spec goes to ``OUT/data/NAME.yaml``, a Hydra ``data`` group folder, so training on the
cohort needs no code:  lhsfed-train --config-dir OUT data=NAME federation.data_dir=OUT
The generator (numpy, pandas) is imported when the command runs, not when ``lhsfed`` starts.

Before anything is written, the output is sized (``estimated_bytes``): more site files than
``MAX_SITE_FILES`` or more bytes than the disk has free is refused in one line. A large job
(``LARGE_JOB_ROWS`` rows, or many sites on a terminal) shows a progress bar on stderr.
"""

from __future__ import annotations

import io
import math
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from federation.core.atomic import write_bytes
from federation.core.errors import ConfigError
from federation.core.input_files import require_output_folder

if TYPE_CHECKING:
    import pandas as pd

    from federation.modeler.synth import CohortOptions


# Parquet as synth writes it: about 24 bytes a row (measured), 1.3 more per noise column, and
# about 22 kB a file; rounded up so the estimate is not below what is written.
BYTES_PER_ROW, BYTES_PER_NOISE_VALUE, BYTES_PER_FILE = 32, 2, 32 << 10
MAX_SITE_FILES = 10_000  # files in one folder: beyond this, --single-file
LARGE_JOB_ROWS = 1_000_000  # a progress bar even when stderr is not a terminal
TERMINAL_BAR_SITES = 20  # on a terminal, a bar for more sites than this


def estimated_bytes(rows: int, files: int, noise_features: int) -> int:
    """About how many bytes synth writes for ``rows`` rows in ``files`` Parquet files."""
    return rows * (BYTES_PER_ROW + BYTES_PER_NOISE_VALUE * noise_features) + files * BYTES_PER_FILE


def _size(n: float) -> str:
    for unit in ("bytes", "kB", "MB", "GB", "TB"):
        if n < 1024 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TB"


def _free_bytes(out: Path) -> int:
    """Free bytes on the disk ``out`` is (or will be) on: its nearest existing folder."""
    folder = out.absolute()
    while not folder.exists():
        folder = folder.parent
    return shutil.disk_usage(folder).free


def refuse_what_cannot_be_written(out: Path, args, options: CohortOptions) -> None:
    """Too many site files for one folder, or more bytes than the disk has free: one line."""
    files = 1 if args.single_file else args.sites
    if files > MAX_SITE_FILES:
        raise ConfigError(
            f"--sites {args.sites} would write {args.sites} files into {out}, more than "
            f"{MAX_SITE_FILES}; give fewer --sites, or --single-file for one multi-centre file "
            "(nothing was written)"
        )
    need, free = estimated_bytes(max(args.rows, 0), files, options.noise_features), _free_bytes(out)
    if need > free:
        raise ConfigError(
            f"--out {out}: {args.rows} rows need about {_size(need)} and the disk has "
            f"{_size(free)} free; give fewer --rows, or --out on a larger disk (nothing was written)"
        )


@contextmanager
def _progress(args) -> Iterator[Callable[[str, int], None] | None]:
    """A rows-written bar on stderr for a large job (or many sites on a terminal), or None."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    stderr = Console(stderr=True)
    if args.rows < LARGE_JOB_ROWS and not (stderr.is_terminal and args.sites > TERMINAL_BAR_SITES):
        yield None
        return
    columns = (TextColumn("synth {task.description}"), BarColumn(), MofNCompleteColumn())
    columns += (TimeRemainingColumn(),)
    with Progress(*columns, console=stderr, transient=True) as bar:
        task = bar.add_task("rows", total=args.rows)
        yield lambda site, rows: bar.update(task, advance=rows, description=site)


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
    progress: Callable[[str, int], None] | None = None,
) -> Path:
    """Generate hospital by hospital (memory of one at a time); returns the spec's path.

    ``options``: how hard the cohort is (default ``CohortOptions()``, the original generator);
    ``progress`` is told each hospital's name and rows once they are made.
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
            if progress:
                progress(site, len(frame))
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
    refuse_what_cannot_be_written(out, args, options)
    if not args.force:
        _refuse_overwrite(out, args)
    with _progress(args) as progress:
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
            progress=progress,
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
