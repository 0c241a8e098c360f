"""Synthetic non-IID hospital cohorts for scale tests (pure: numpy and pandas, no files).

Each hospital draws adult admissions with a 30-day readmission outcome. Hospitals differ as
real ones do, by an amount set by ``heterogeneity`` (0 = identically distributed, 1 = very
different): size, case mix (a latent severity and age shift that moves every vital and lab),
categorical mix (smoking, admission type), how often each value is recorded, and baseline
readmission rate. The outcome model's coefficients are shared, so one global model fits all.

:class:`CohortOptions` makes the cohorts as hard as real hospital data can be (the benchmark
set the defaults are judged on, benchmarks/defaults.py): a rare outcome, small sites, heavy
missingness whose *pattern* carries signal (sicker patients get more labs drawn), a weak
signal, and noise columns unrelated to the outcome. The default options draw exactly the
cohorts earlier versions drew.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

LABEL = "readmitted_30d"
SITE_COLUMN = "hospital"
ID_COLUMN = "patient_id"
SMOKER_LEVELS = ("never", "former", "current")
ADMISSION_LEVELS = ("elective", "emergency", "urgent")


@dataclass(frozen=True)
class Numeric:
    """A measured value: population mean/sd, how it moves with severity and age, its range."""

    name: str
    unit: str
    mean: float
    sd: float
    per_severity: float
    per_decade: float
    low: float
    high: float
    missing_rate: float
    decimals: int = 1


NUMERICS = (
    Numeric("bmi", "kg/m2", 28.0, 5.5, 0.3, 0.0, 12, 70, 0.08),
    Numeric("systolic_bp", "mmHg", 132, 19, 4.0, 2.5, 60, 250, 0.02, 0),
    Numeric("diastolic_bp", "mmHg", 77, 11, 1.5, -0.5, 30, 150, 0.02, 0),
    Numeric("heart_rate", "bpm", 84, 15, 6.0, -0.5, 30, 220, 0.02, 0),
    Numeric("resp_rate", "breaths/min", 18, 4, 1.5, 0.1, 5, 60, 0.05, 0),
    Numeric("temperature", "degC", 37.0, 0.6, 0.2, 0.0, 33, 42, 0.03),
    Numeric("spo2", "%", 96, 2.5, -1.2, -0.2, 50, 100, 0.03, 0),
    Numeric("glucose", "mg/dL", 125, 40, 10.0, 2.0, 40, 600, 0.06, 0),
    Numeric("creatinine", "mg/dL", 1.1, 0.45, 0.15, 0.06, 0.2, 15, 0.06, 2),
    Numeric("sodium", "mmol/L", 139, 3.5, -0.8, 0.0, 110, 170, 0.06, 0),
    Numeric("potassium", "mmol/L", 4.2, 0.5, 0.1, 0.02, 2, 8, 0.06),
    Numeric("hemoglobin", "g/dL", 13.0, 1.8, -0.5, -0.2, 4, 20, 0.06),
    Numeric("wbc", "10^9/L", 8.5, 3.0, 1.2, 0.0, 0.5, 50, 0.06),
    Numeric("hba1c", "%", 6.2, 1.2, 0.2, 0.05, 3.5, 15, 0.45),
    Numeric("ldl", "mg/dL", 105, 35, -2.0, -2.0, 20, 300, 0.30, 0),
    Numeric("prior_admissions", "admissions", 0.8, 1.2, 0.5, 0.15, 0, 30, 0.0, 0),
    Numeric("medications", "drugs", 6.0, 3.5, 1.2, 0.6, 0, 30, 0.01, 0),
)
BINARIES = ("sex", "diabetes", "hypertension", "copd", "heart_failure", "ckd")
# Shared outcome model, on standardized severity/age and the binaries.
COEF_SEVERITY, COEF_AGE, COEF_PRIOR = 0.9, 0.35, 0.45
COEF_BINARY = {
    "sex": 0.05,
    "diabetes": 0.2,
    "hypertension": 0.1,
    "copd": 0.35,
    "heart_failure": 0.5,
    "ckd": 0.3,
}
COEF_SMOKER = {"never": 0.0, "former": 0.1, "current": 0.3}
COEF_ADMISSION = {"elective": -0.5, "emergency": 0.3, "urgent": 0.1}
BASE_LOGIT = -2.6  # about 20 % readmitted in a typical hospital
NOISE_PREFIX = "noise_"


@dataclass(frozen=True)
class CohortOptions:
    """How hard the cohorts are (defaults: the original generator, draw for draw).

    ``prevalence``: mean outcome rate of a typical hospital (None: ``BASE_LOGIT``, ~20 %);
    ``signal``: scale of every outcome coefficient (< 1: a weaker signal);
    ``missing``: scale of every value's missing rate (capped at 95 %);
    ``informative_missing``: how much more often a *healthier* patient's labs and vitals go
    unrecorded, as a logit shift per sd of severity (0: missing at random, so the model's
    missing flags carry no signal); ``noise_features``: numeric columns with no effect;
    ``min_rows`` / ``max_rows``: bounds on a hospital's rows.
    """

    prevalence: float | None = None
    signal: float = 1.0
    missing: float = 1.0
    informative_missing: float = 0.0
    noise_features: int = 0
    min_rows: int = 60
    max_rows: int | None = None
    # Within diabetes == 1 the outcome logit's spread around its mean is scaled by this
    # (1: no shift): the main-effects model fitted to everyone is then miscalibrated there.
    subgroup_shift: float = 1.0

    def problems(self) -> list[str]:
        checks = [
            (
                self.prevalence is None or 0.0 < self.prevalence < 1.0,
                f"--prevalence must be in (0, 1) (got {self.prevalence})",
            ),
            (self.signal >= 0, f"--signal must be >= 0 (got {self.signal})"),
            (self.missing >= 0, f"--missing must be >= 0 (got {self.missing})"),
            (self.noise_features >= 0, f"--noise-features must be >= 0 (got {self.noise_features})"),
            (self.subgroup_shift > 0, f"--subgroup-shift must be > 0 (got {self.subgroup_shift})"),
            (self.min_rows >= 1, f"--min-site-rows must be >= 1 (got {self.min_rows})"),
            (
                self.max_rows is None or self.max_rows >= self.min_rows,
                f"--max-site-rows ({self.max_rows}) must be >= --min-site-rows ({self.min_rows})",
            ),
        ]
        return [message for ok, message in checks if not ok]


def site_names(n_sites: int) -> list[str]:
    width = max(3, len(str(n_sites)))
    return [f"hospital_{i + 1:0{width}d}" for i in range(n_sites)]


def site_sizes(
    n_sites: int,
    total_rows: int,
    heterogeneity: float,
    rng: np.random.Generator,
    min_rows: int = 60,
    max_rows: int | None = None,
) -> np.ndarray:
    """Rows per hospital summing to ``total_rows``: log-normal spread growing with H, each
    between ``min_rows`` and ``max_rows`` (rows over the cap go to the hospitals under it)."""
    if total_rows < n_sites * min_rows:
        raise ValueError(f"{total_rows} rows cannot give {n_sites} sites {min_rows} rows each")
    if max_rows is not None and total_rows > n_sites * max_rows:
        raise ValueError(f"{total_rows} rows cannot fit {n_sites} sites of at most {max_rows} rows")
    weights = rng.lognormal(0.0, 1.2 * heterogeneity, n_sites)
    extra = total_rows - n_sites * min_rows
    sizes = min_rows + np.floor(extra * weights / weights.sum()).astype(int)
    if max_rows is not None:
        sizes = _water_fill(sizes, weights, total_rows, max_rows)
    sizes[np.argmax(sizes if max_rows is None else np.where(sizes < max_rows, weights, -1))] += (
        total_rows - sizes.sum()
    )
    return sizes


def _water_fill(sizes: np.ndarray, weights: np.ndarray, total_rows: int, cap: int) -> np.ndarray:
    """Cap sizes at ``cap``, handing the excess to uncapped hospitals by their weights."""
    sizes = np.minimum(sizes, cap)
    while total_rows - sizes.sum() >= 1 and (sizes < cap).any():
        open_ = sizes < cap
        share = np.floor((total_rows - sizes.sum()) * np.where(open_, weights, 0) / weights[open_].sum())
        if share.sum() == 0:
            break
        sizes = np.minimum(sizes + share.astype(int), cap)
    return sizes


def _categorical(rng, n, levels, base, heterogeneity):
    concentration = 1.0 + 50.0 * (1.0 - heterogeneity) ** 2
    probs = rng.dirichlet(np.asarray(base) * concentration)
    return np.asarray(levels, dtype=object)[rng.choice(len(levels), size=n, p=probs)]


def _binaries(rng, age_z, severity, offset) -> dict[str, np.ndarray]:
    logits = {
        "sex": 0.0 * age_z,
        "diabetes": -1.3 + 0.4 * age_z + 0.3 * severity,
        "hypertension": -0.4 + 0.8 * age_z + 0.2 * severity,
        "copd": -2.2 + 0.5 * age_z + 0.4 * severity,
        "heart_failure": -2.4 + 0.8 * age_z + 0.6 * severity,
        "ckd": -2.3 + 0.7 * age_z + 0.5 * severity,
    }
    return {
        k: (rng.random(len(age_z)) < 1 / (1 + np.exp(-(v + offset)))).astype("int8")
        for k, v in logits.items()
    }


def _missing_probability(rate: float, severity: np.ndarray, informative: float) -> np.ndarray | float:
    """Chance a value is unrecorded: ``rate`` on average, higher for healthier patients
    (fewer tests ordered) when ``informative`` > 0."""
    rate = min(0.95, rate)
    if informative == 0 or rate <= 0:
        return rate
    base = np.log(rate / (1 - rate))
    return np.minimum(0.95, 1 / (1 + np.exp(-(base - informative * severity))))


def _numerics(
    rng, severity, age, recording, heterogeneity, options: CohortOptions = CohortOptions()
) -> dict[str, np.ndarray]:
    out = {}
    for feat in NUMERICS:
        shift = rng.normal(0.0, 0.25 * heterogeneity) * feat.sd  # lab calibration, local habits
        values = (
            feat.mean
            + shift
            + feat.per_severity * severity
            + feat.per_decade * (age - 62) / 10
            + rng.normal(0, feat.sd, len(age))
        )
        values = np.round(np.clip(values, feat.low, feat.high), feat.decimals)
        chance = _missing_probability(
            feat.missing_rate * recording * options.missing, severity, options.informative_missing
        )
        missing = rng.random(len(age)) < chance
        out[feat.name] = np.where(missing, np.nan, values)
    return out


def _intercept(linear: np.ndarray, prevalence: float) -> float:
    """Intercept giving a mean risk of ``prevalence`` over these patients (bisection)."""
    low, high = -20.0, 20.0
    for _ in range(60):
        mid = (low + high) / 2
        low, high = (mid, high) if np.mean(1 / (1 + np.exp(-(linear + mid)))) < prevalence else (low, mid)
    return (low + high) / 2


def _noise_columns(rng, n_rows: int, count: int, heterogeneity: float) -> dict[str, np.ndarray]:
    """Measurements that have nothing to do with the outcome (site-shifted, rounded)."""
    return {
        f"{NOISE_PREFIX}{i + 1:02d}": np.round(rng.normal(rng.normal(0, heterogeneity), 1.0, n_rows), 2)
        for i in range(count)
    }


def _outcome_logit(
    rng, h, severity, age_z, prior, binaries, smoker, admission, options: CohortOptions
) -> np.ndarray:
    """The shared outcome model (scaled by ``options.signal``) plus this hospital's offset."""
    offset, k = rng.normal(0, 0.8 * h), options.signal  # k = 1: the original sums, term by term

    def linear(start):
        return (
            start
            + k * COEF_SEVERITY * severity
            + k * COEF_AGE * age_z
            + k * COEF_PRIOR * (prior - 0.8)
            + sum(k * COEF_BINARY[b] * v for b, v in binaries.items())
            + k * pd.Series(smoker).map(COEF_SMOKER).to_numpy()
            + k * pd.Series(admission).map(COEF_ADMISSION).to_numpy()
        )

    if options.prevalence is None:
        return _shifted(linear(BASE_LOGIT + offset), binaries, options)
    return _shifted(linear(_intercept(linear(0.0), options.prevalence) + offset), binaries, options)


SHIFTED_SUBGROUP = "diabetes"  # the subgroup --subgroup-shift mis-scales (level 1)


def _shifted(logit: np.ndarray, binaries, options: CohortOptions) -> np.ndarray:
    """The logit inside ``SHIFTED_SUBGROUP`` = 1 scaled around its mean by ``subgroup_shift``."""
    inside = binaries[SHIFTED_SUBGROUP] == 1
    if options.subgroup_shift == 1.0 or not inside.any():
        return logit
    centre = logit[inside].mean()
    return np.where(inside, centre + options.subgroup_shift * (logit - centre), logit)


def hospital_cohort(
    name: str, n_rows: int, heterogeneity: float, seed: int, options: CohortOptions = CohortOptions()
) -> pd.DataFrame:
    """One hospital's admissions: ids, site, features (with units per ``NUMERICS``), outcome."""
    rng = np.random.default_rng(seed)
    h = float(heterogeneity)
    severity = rng.normal(rng.normal(0.0, 0.7 * h), 1.0, n_rows)
    age = np.clip(rng.normal(62 + rng.normal(0, 8 * h), 15, n_rows), 18, 100).round()
    age_z = (age - 62) / 15
    binaries = _binaries(rng, age_z, severity, rng.normal(0, 0.4 * h))
    recording = rng.lognormal(0.0, h)  # some hospitals record labs far less often
    numerics = _numerics(rng, severity, age, recording, h, options)
    if rng.random() < 0.3 * h:
        numerics["hba1c"][:] = np.nan  # not collected at this hospital at all
    smoker = _categorical(rng, n_rows, SMOKER_LEVELS, (0.5, 0.3, 0.2), h)
    admission = _categorical(rng, n_rows, ADMISSION_LEVELS, (0.3, 0.55, 0.15), h)
    prior = np.nan_to_num(numerics["prior_admissions"], nan=0.8)
    logit = _outcome_logit(rng, h, severity, age_z, prior, binaries, smoker, admission, options)
    outcome = (rng.random(n_rows) < 1 / (1 + np.exp(-logit))).astype("int8")
    smoker[rng.random(n_rows) < 0.1 * recording] = None  # smoking status often unrecorded
    noise = _noise_columns(rng, n_rows, options.noise_features, h)
    return pd.DataFrame(
        {
            ID_COLUMN: [f"{name}-{i:07d}" for i in range(n_rows)],
            SITE_COLUMN: name,
            "age": age,
            **binaries,
            **numerics,
            "smoker": smoker,
            "admission_type": admission,
            **noise,
            LABEL: outcome,
        }
    )


def cohorts(
    n_sites: int,
    total_rows: int,
    heterogeneity: float,
    seed: int = 0,
    options: CohortOptions = CohortOptions(),
    *,
    shift: dict[str, float] | None = None,
):
    """Yield (site name, frame) one hospital at a time, so callers can stream them to disk.

    ``shift``: site name -> SDs its numeric features move by (:func:`shifted`); every other
    site, and the shifted site's other columns, are drawn exactly as without it.
    """
    shift = dict(shift or {})
    unknown = sorted(set(shift) - set(site_names(n_sites)))
    if unknown:
        names = f"{site_names(n_sites)[0]} .. {site_names(n_sites)[-1]}"
        raise ValueError(f"--shift names {', '.join(unknown)}: the sites are {names}")
    if not 0.0 <= heterogeneity <= 1.0:
        raise ValueError(f"heterogeneity must be in [0, 1] (got {heterogeneity})")
    if options.problems():
        raise ValueError("; ".join(options.problems()))
    rng = np.random.default_rng(seed)
    sizes = site_sizes(n_sites, total_rows, heterogeneity, rng, options.min_rows, options.max_rows)
    for index, (name, size) in enumerate(zip(site_names(n_sites), sizes)):
        frame = hospital_cohort(name, int(size), heterogeneity, seed * 100_003 + index, options)
        yield name, shifted(frame, shift[name]) if shift.get(name) else frame


def shifted(frame: pd.DataFrame, sds: float) -> pd.DataFrame:
    """The hospital's numeric features (age and every vital and lab) moved by ``sds``
    population SDs, clipped to their valid range: a site whose case mix has changed
    (``lhsfed drift`` should flag it). Missing values stay missing."""
    out = frame.copy()
    out["age"] = np.clip(out["age"] + sds * 15, 18, 100).round()
    for feat in NUMERICS:
        out[feat.name] = np.round(np.clip(out[feat.name] + sds * feat.sd, feat.low, feat.high), feat.decimals)
    return out


SUBGROUPS = ("sex", SHIFTED_SUBGROUP)  # marked subgroup: true, with age bands, by --subgroups
AGE_BANDS = [40, 65]


def _subgroup(marked: bool) -> dict:
    return {"subgroup": True} if marked else {}


def feature_specs(noise_features: int = 0, subgroups: bool = False) -> list[dict]:
    """The dataset spec's feature list for these cohorts (30 model input columns, plus one
    per noise feature); ``subgroups`` marks sex, diabetes and age bands as subgroups."""
    age_bands = {"subgroup_bins": AGE_BANDS} if subgroups else {}
    return [
        {"name": "age", "type": "numeric", "min": 18, "max": 100, "unit": "years", **age_bands},
        *({"name": b, "type": "binary", **_subgroup(subgroups and b in SUBGROUPS)} for b in BINARIES),
        *({"name": f.name, "type": "numeric", "min": f.low, "max": f.high, "unit": f.unit} for f in NUMERICS),
        {"name": "smoker", "type": "categorical", "levels": list(SMOKER_LEVELS)},
        {"name": "admission_type", "type": "categorical", "levels": list(ADMISSION_LEVELS)},
        *({"name": f"{NOISE_PREFIX}{i + 1:02d}", "type": "numeric"} for i in range(noise_features)),
    ]


def dataset_spec(
    name: str,
    files: dict[str, str] | None = None,
    *,
    file: str | None = None,
    sites: list[str] | None = None,
    noise_features: int = 0,
    subgroups: bool = False,
) -> dict:
    """A dataset spec for per-site ``files`` or one multi-centre ``file`` holding ``sites``."""
    spec = {
        "name": name,
        "format": "parquet",
        "header": True,
        "columns": [],
        "missing_markers": [],
        "drop_columns": [ID_COLUMN],
        "id_column": ID_COLUMN,
        "label": {"column": LABEL, "positive_values": [1], "negative_values": [0]},
    }
    if file is not None:
        spec.update(file=file, site_column=SITE_COLUMN, sites=list(sites or ()))
    else:
        spec["sites"] = dict(files or {})
    spec.update(
        features=feature_specs(noise_features, subgroups),
        split={"test_fraction": 0.3, "seed": 42},
        min_rows=20,
    )
    return spec
