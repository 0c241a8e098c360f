"""Typed dataset spec: what a site's file must look like and how it becomes model inputs.

The spec travels from the coordinator's Hydra config to every site inside the flat run
config (as one JSON string), so a site and the server always agree on the feature layout.
"""

from __future__ import annotations

import difflib
import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from federation.core.errors import ConfigError, collect_then_raise

FEATURE_TYPES = ("numeric", "binary", "categorical")
STANDARDIZE_MODES = ("none", "site")
# A categorical level or missing marker: a number, or text such as "current smoker".
Value = float | str


@dataclass(frozen=True)
class FeatureSpec:
    """One input column: its type, valid range or levels, and values meaning 'missing'."""

    name: str
    type: str
    min: float | None = None
    max: float | None = None
    unit: str | None = None
    levels: tuple[Value, ...] = ()
    missing_if: tuple[Value, ...] = ()
    # One-hot without the first level (dummy coding), as FLamby and pandas' drop_first do.
    drop_first: bool = False
    # Report metrics per level of this binary/categorical feature (issue N.1).
    subgroup: bool = False
    # A numeric feature's cut points: [40, 65] gives the bands <40, 40-<65, >=65.
    subgroup_bins: tuple[float, ...] = ()

    @property
    def is_subgroup(self) -> bool:
        return self.subgroup or bool(self.subgroup_bins)

    @property
    def encoded_levels(self) -> tuple[Value, ...]:
        """The levels that get a model column (all, or all but the first with drop_first)."""
        return self.levels[1:] if self.drop_first else self.levels

    def encoded_names(self) -> list[str]:
        """Model input columns this feature becomes (one-hot for categoricals)."""
        if self.type == "categorical":
            return [f"{self.name}={_fmt(level)}" for level in self.encoded_levels]
        return [self.name]

    @property
    def text_levels(self) -> bool:
        """Levels written as text: the column is compared as text, not parsed as numbers."""
        return has_text_levels(self.levels)


@dataclass(frozen=True)
class LabelSpec:
    """Binary outcome: which raw values mean positive and which negative."""

    column: str
    positive_values: tuple[float, ...]
    negative_values: tuple[float, ...]


@dataclass(frozen=True)
class OutcomeSpec:
    """What the label means, in words (TRIPOD+AI item 'outcome'): optional, for the report.

    ``definition``: how the outcome was ascertained (e.g. angiographic disease, > 50 % narrowing);
    ``horizon``: when it is predicted for, relative to the moment of prediction (e.g. "present
    at the time of angiography (diagnostic)", "death within 30 days of admission")."""

    definition: str | None = None
    horizon: str | None = None


@dataclass(frozen=True)
class SplitSpec:
    """Per-site test split, then validation from the rest (stratified where possible)."""

    test_fraction: float = 0.3
    seed: int = 42
    # Fraction of the NON-test rows held out for validation (round selection, early stopping).
    validation_fraction: float = 0.2
    # Stratify only when each class has at least this many rows at the site (FLamby: 3).
    stratify_min_class_rows: int = 2


@dataclass(frozen=True)
class DatasetSpec:
    """A whole dataset: file layout, label, features, sites and split.

    Two layouts: one file per site (``sites`` maps site name -> file name), or one
    multi-centre ``file`` whose ``site_column`` says which site a row belongs to (``sites``
    maps site name -> that column's value). Paths are relative to the data folder.
    """

    name: str
    columns: tuple[str, ...]
    label: LabelSpec
    features: tuple[FeatureSpec, ...]
    sites: dict[str, str]
    split: SplitSpec = field(default_factory=SplitSpec)
    format: str = "csv"
    header: bool = False
    missing_markers: tuple[str, ...] = ("?",)
    embedded: str | None = None
    min_rows: int = 20
    file: str | None = None
    site_column: str | None = None
    drop_columns: tuple[str, ...] = ()
    # Out-of-range values and unknown categorical levels: warnings, or (strict) a refusal.
    strict_values: bool = False
    # true: rows with a missing feature or label are dropped at load (else imputed in the model).
    drop_incomplete_rows: bool = False
    # "site": each site standardizes with its own training mean/std after the split (FLamby).
    standardize: str = "none"
    # A column naming the patient (or admission) of each row: never a model input; lhsfed site
    # check fails a file where one ID is on two rows (they would sit on both sides of the split).
    id_column: str | None = None
    # What the label means (definition, horizon): documentation for the report, optional.
    outcome: OutcomeSpec = field(default_factory=OutcomeSpec)

    @property
    def outcome_definition(self) -> str | None:
        return self.outcome.definition

    @property
    def outcome_horizon(self) -> str | None:
        return self.outcome.horizon

    @property
    def subgroup_features(self) -> tuple[FeatureSpec, ...]:
        return tuple(f for f in self.features if f.is_subgroup)

    @property
    def site_names(self) -> list[str]:
        return list(self.sites)

    def encoded_feature_names(self) -> list[str]:
        return [name for f in self.features for name in f.encoded_names()]

    def to_json(self) -> str:
        """The spec as JSON; subgroup keys only where set, so older specs encode as before."""
        plain = asdict(self)
        if plain["id_column"] is None:
            del plain["id_column"]
        plain["outcome"] = {k: v for k, v in plain["outcome"].items() if v is not None}
        if not plain["outcome"]:
            del plain["outcome"]
        for feat in plain["features"]:
            for key in ("subgroup", "subgroup_bins"):
                if not feat[key]:
                    del feat[key]
        return json.dumps(plain, sort_keys=True)


# An exported model's input for text that is none of a column's levels (encodes as all-zero one-hot).
UNKNOWN_LEVEL_CODE = -1.0


def has_text_levels(levels) -> bool:
    """A column whose levels are text (e.g. never/former/current) is read as text, not numbers."""
    return any(isinstance(level, str) for level in levels or ())


def level_codes(levels) -> dict[str, float]:
    """Text level -> the number an exported model takes for it: its position in ``levels``.

    A model's input tensor holds numbers only, so ``lhsfed predict`` turns each text cell into
    its level's code (:data:`UNKNOWN_LEVEL_CODE` for other text, NaN when missing).
    """
    return {level: float(i) for i, level in enumerate(levels or ()) if isinstance(level, str)}


def _fmt(value: Value) -> str:
    if isinstance(value, str):
        return value
    return str(int(value)) if float(value).is_integer() else str(value)


def _floats(values: Any) -> tuple[float, ...]:
    return tuple(float(v) for v in (values or ()))


def _values(values: Any) -> tuple[Value, ...]:
    """Numbers stay numbers (1 == 1.0), anything else is text."""
    return tuple(float(v) if isinstance(v, (int, float)) else str(v) for v in (values or ()))


def value_text(value: Any) -> str:
    """A level or site value as text, numbers without a needless '.0' (3.0 -> '3')."""
    return _fmt(float(value)) if isinstance(value, (int, float)) else str(value)


def _sites(raw: Any) -> dict[str, str]:
    """``sites`` as a mapping (name -> file or site value) or a plain list of site values."""
    if isinstance(raw, dict):
        return {str(k): value_text(v) for k, v in raw.items()}
    return {value_text(v): value_text(v) for v in (raw or ())}


def _feature(raw: dict[str, Any]) -> FeatureSpec:
    return FeatureSpec(
        name=str(raw["name"]),
        type=str(raw.get("type", "numeric")),
        min=None if raw.get("min") is None else float(raw["min"]),
        max=None if raw.get("max") is None else float(raw["max"]),
        unit=raw.get("unit"),
        levels=_values(raw.get("levels")),
        missing_if=_values(raw.get("missing_if")),
        drop_first=bool(raw.get("drop_first", False)),
        subgroup=bool(raw.get("subgroup", False)),
        subgroup_bins=_floats(raw.get("subgroup_bins")),
    )


def _problems(spec: DatasetSpec) -> list[str]:
    problems = []
    if spec.format not in ("csv", "parquet"):
        problems.append(f"data.format must be csv or parquet (got {spec.format!r})")
    if not spec.sites:
        problems.append("data.sites is empty: name at least one site and its file")
    known = set(spec.columns) if spec.columns else None
    for feat in spec.features:
        if feat.type not in FEATURE_TYPES:
            problems.append(f"feature {feat.name!r}: type must be one of {FEATURE_TYPES}")
        if feat.type == "categorical" and not feat.levels:
            problems.append(f"feature {feat.name!r}: a categorical feature needs levels")
        if known is not None and feat.name not in known:
            problems.append(f"feature {feat.name!r} is not in data.columns")
        problems += _subgroup_problems(feat, spec.standardize)
    if not 0.0 < spec.split.test_fraction < 1.0:
        problems.append(f"data.split.test_fraction must be in (0, 1) (got {spec.split.test_fraction})")
    if not 0.0 <= spec.split.validation_fraction < 1.0:
        problems.append(
            "data.split.validation_fraction must be in [0, 1) (got "
            f"{spec.split.validation_fraction}); 0 keeps every non-test row for training"
        )
    if spec.standardize not in STANDARDIZE_MODES:
        problems.append(f"data.standardize must be one of {STANDARDIZE_MODES} (got {spec.standardize!r})")
    if not spec.label.positive_values:
        problems.append("data.label.positive_values is empty")
    return problems + _layout_problems(spec)


def _subgroup_problems(feat: FeatureSpec, standardize: str) -> list[str]:
    """``subgroup`` on levels, ``subgroup_bins`` (increasing cut points) on raw numbers."""
    where = f"feature {feat.name!r}"
    if feat.subgroup and feat.type == "numeric":
        return [
            f"{where}: subgroup: true needs a binary or categorical feature; "
            "give a numeric one subgroup_bins: [cut, ...] instead"
        ]
    if not feat.subgroup_bins:
        return []
    if feat.type != "numeric":
        return [f"{where}: subgroup_bins is for numeric features; use subgroup: true on a {feat.type} one"]
    bins = feat.subgroup_bins
    if any(b >= c for b, c in zip(bins, bins[1:])):
        return [f"{where}: subgroup_bins must be strictly increasing cut points (got {list(bins)})"]
    if standardize != "none":
        return [
            f"{where}: subgroup_bins cut raw values, but data.standardize is {standardize!r}; "
            "set it to none or drop subgroup_bins"
        ]
    return []


def _layout_problems(spec: DatasetSpec) -> list[str]:
    problems = []
    if bool(spec.file) != bool(spec.site_column):
        problems.append(
            "a multi-centre file needs both data.file and data.site_column "
            f"(got file={spec.file!r}, site_column={spec.site_column!r})"
        )
    kept = {f.name for f in spec.features} | {spec.label.column, spec.site_column}
    for column in sorted(kept & set(spec.drop_columns)):
        problems.append(f"column {column!r} is both used and in data.drop_columns; remove one")
    if spec.id_column is not None and spec.id_column in kept:
        problems.append(
            f"data.id_column {spec.id_column!r} is also a feature, the label or the site column; "
            "name the column that identifies the patient"
        )
    return problems


def _names(cls, *extra: str) -> tuple[str, ...]:
    return tuple(f.name for f in fields(cls)) + extra


# Keys another part of the project reads from ``split`` before SplitSpec has a field for them.
SPLIT_EXTRA_KEYS = ("validation_fraction",)


def _unknown(mapping: Any, valid: tuple[str, ...], where: str) -> list[str]:
    """One problem per key of ``mapping`` that is not in ``valid``, with the closest valid one."""
    if not isinstance(mapping, dict):
        return []
    problems = []
    for key in mapping:
        if str(key) in valid:
            continue
        close = difflib.get_close_matches(str(key), valid, n=1)
        hint = f"did you mean {close[0]!r}?" if close else f"valid keys: {', '.join(valid)}"
        problems.append(f"{where}{key}: unknown key in the dataset spec; {hint}")
    return problems


def unknown_keys(raw: dict[str, Any]) -> list[str]:
    """Every misspelt or unknown key, anywhere in a spec (a typo must not be ignored)."""
    problems = _unknown(raw, _names(DatasetSpec), "data.")
    problems += _unknown(raw.get("label"), _names(LabelSpec), "data.label.")
    problems += _unknown(raw.get("split"), _names(SplitSpec, *SPLIT_EXTRA_KEYS), "data.split.")
    problems += _unknown(raw.get("outcome"), _names(OutcomeSpec), "data.outcome.")
    for i, feature in enumerate(raw.get("features") or ()):
        name = feature.get("name", "?") if isinstance(feature, dict) else "?"
        problems += _unknown(feature, _names(FeatureSpec), f"data.features[{i}] ({name}).")
    return problems


def _outcome(raw: Any) -> OutcomeSpec:
    """``outcome: {definition: TEXT, horizon: TEXT}``, each optional; anything else is refused
    with one line naming the key."""
    if raw is None:
        return OutcomeSpec()
    if not isinstance(raw, dict):
        raise ConfigError(
            f"data.outcome must be a mapping like {{definition: TEXT, horizon: TEXT}} (got {raw!r})"
        )
    for key in ("definition", "horizon"):
        value = raw.get(key)
        if value is not None and (not isinstance(value, str) or not value.strip()):
            raise ConfigError(
                f"data.outcome.{key} must be non-empty text (got {value!r}); quote it in the YAML"
            )
    return OutcomeSpec(
        **{k: (None if raw.get(k) is None else raw[k].strip()) for k in ("definition", "horizon")}
    )


def _split(raw: Any) -> SplitSpec:
    known = _names(SplitSpec)
    return SplitSpec(**{k: v for k, v in (raw or {}).items() if k in known})


def parse_dataset_spec(raw: dict[str, Any]) -> DatasetSpec:
    """Build a validated spec from a plain mapping (Hydra YAML or decoded JSON)."""
    collect_then_raise(unknown_keys(raw), ConfigError)
    try:
        label = raw["label"]
        spec = DatasetSpec(
            name=str(raw["name"]),
            columns=tuple(str(c) for c in raw.get("columns") or ()),
            label=LabelSpec(
                column=str(label["column"]),
                positive_values=_floats(label.get("positive_values")),
                negative_values=_floats(label.get("negative_values")),
            ),
            features=tuple(_feature(f) for f in raw["features"]),
            sites=_sites(raw.get("sites")),
            split=_split(raw.get("split")),
            format=str(raw.get("format", "csv")),
            header=bool(raw.get("header", False)),
            missing_markers=tuple(str(m) for m in raw.get("missing_markers") or ()),
            embedded=raw.get("embedded"),
            min_rows=int(raw.get("min_rows", 20)),
            file=None if raw.get("file") is None else str(raw["file"]),
            site_column=None if raw.get("site_column") is None else str(raw["site_column"]),
            drop_columns=tuple(str(c) for c in raw.get("drop_columns") or ()),
            strict_values=bool(raw.get("strict_values", False)),
            drop_incomplete_rows=bool(raw.get("drop_incomplete_rows", False)),
            standardize=str(raw.get("standardize", "none")),
            id_column=None if raw.get("id_column") is None else str(raw["id_column"]),
            outcome=_outcome(raw.get("outcome")),
        )
    except (KeyError, TypeError) as err:
        raise ConfigError(f"dataset spec is missing or has a malformed entry: {err}") from None
    collect_then_raise(_problems(spec), ConfigError)
    return spec


def spec_from_json(text: str) -> DatasetSpec:
    """Decode the spec a site receives in its run config."""
    return parse_dataset_spec(json.loads(text))


def load_spec_file(path: Path) -> DatasetSpec:
    """A dataset spec from a YAML (or JSON) file, e.g. ``configs/data/NAME.yaml``."""
    import yaml

    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except OSError as err:
        raise ConfigError(
            f"dataset spec {path} cannot be read ({err.strerror or err}); check the path"
        ) from None
    except yaml.YAMLError:
        raise ConfigError(f"dataset spec {path} is not valid YAML; fix the file") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"dataset spec {path} must be a mapping of keys (name, label, features, ...)")
    return parse_dataset_spec(raw)
