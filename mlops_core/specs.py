"""Model specs: one small YAML file per model, validated into a ``ModelSpec``.

A spec names the taxi type, the features, the target, the row filters, the training month,
the drift threshold and the retraining window. ``definitions.py`` builds one full set of
assets, checks, sensors and schedules per spec, so adding a YAML file adds a model.
The packaged specs live in ``mlops_core/model_specs/``; which folder is read (``MODEL_SPECS_DIR``)
and the default drift threshold (``DRIFT_THRESHOLD``) are settings, passed in as values by the
code location and the prediction service.
"""

from __future__ import annotations

import itertools
import operator
import re
from datetime import date
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from mlops_core.daily_metrics import PREDICTION_DRIFT, QUALITY_METRICS, RULE_METRICS
from mlops_core.features import Features

# The packaged specs, shared by the code location and the prediction service.
PACKAGED_SPECS_DIR = Path(__file__).resolve().parent / "model_specs"
# The first day of the shared partitions; a spec's training month must not be earlier.
PARTITIONS_START = "2021-01-01"
FIRST_MONTH = PARTITIONS_START[:7]
DEFAULT_DRIFT_THRESHOLD = 0.20
# The retraining policy's defaults, chosen by measurement (docs/decisions.md, bench/cadence.py).
DEFAULT_DAYS_AFTER_CHANGE = 21
DEFAULT_WINDOW_FROM_CHANGE = False
DEFAULT_MIN_ROWS_PER_COLUMN = 20.0
DEFAULT_SHADOW_DAYS = 14
DEFAULT_RESOLVE_AFTER_DAYS = 3
NAME_PATTERN = re.compile(r"^[a-z][a-z0-9_]{0,62}$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Bounds(_Strict):
    """Inclusive bounds on a numeric column; either side may be open."""

    min: float | None = None
    max: float | None = None

    @model_validator(mode="after")
    def _ordered(self) -> Bounds:
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min ({self.min}) is greater than max ({self.max})")
        return self


# training.algorithm -> its scikit-learn regressor (sklearn.linear_model); training.params are
# that estimator's own parameters.
ALGORITHMS = {"linear_regression": "LinearRegression", "ridge": "Ridge", "lasso": "Lasso"}


class Training(_Strict):
    month: str = Field(description="YYYY-MM: the month the first model is trained on")
    train_fraction: float = Field(0.5, gt=0.0, lt=1.0)
    algorithm: Literal["linear_regression", "ridge", "lasso"] = "linear_regression"
    params: dict[str, float | int | bool | str] = Field(default_factory=dict)
    artifact: str = "lin_reg.bin"

    @model_validator(mode="after")
    def _params_suit_the_algorithm(self) -> Training:
        """The estimator takes these parameters: names it has, values scikit-learn accepts for
        the sparse matrix a model is trained on (its checks run when it fits, so it fits four
        rows of one here): refused when the spec loads, not when a training run fails."""
        import warnings

        import numpy as np
        import scipy.sparse as sp
        from sklearn import linear_model

        estimator = getattr(linear_model, ALGORITHMS[self.algorithm])
        known = estimator().get_params()
        unknown = sorted(set(self.params) - set(known))
        if unknown:
            raise ValueError(
                f"params {unknown} are not parameters of {self.algorithm} (scikit-learn's "
                f"{estimator.__name__}: {', '.join(sorted(known))})"
            )
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                rows = sp.csr_matrix(
                    np.array([[1.0, 0.0, 0.5], [0.0, 1.0, 1.5], [1.0, 0.0, 2.0], [0.0, 1.0, 3.0]])
                )
                estimator(**self.params).fit(rows, np.array([2.0, 4.0, 5.0, 8.0]))
        except (TypeError, ValueError) as exc:
            raise ValueError(
                f"params do not suit {self.algorithm} fitted on a sparse matrix (one-hot features), as "
                f"models are: {exc}{_number_hint(self.params)}"
            ) from None
        return self

    @field_validator("month")
    @classmethod
    def _month(cls, value: str) -> str:
        if not re.fullmatch(r"\d{4}-\d{2}", value):
            raise ValueError(f"training month must look like 2022-01, got {value!r}")
        date.fromisoformat(value + "-01")
        if value < FIRST_MONTH:
            raise ValueError(f"training month {value} is before the first partition ({FIRST_MONTH})")
        return value


def _number_hint(params: dict) -> str:
    """YAML reads ``1e-3`` as text (a float needs a dot: ``1.0e-3``); say so when that is likely."""
    texts = []
    for name, value in params.items():
        if isinstance(value, str):
            try:
                float(value)
            except ValueError:
                continue
            texts.append(name)
    return f" ({', '.join(texts)}: YAML read a number as text; write 1e-3 as 1.0e-3)" if texts else ""


# Evidently 0.7's drift methods for a numeric column, and what their value is. A p-value is
# small when the distributions differ (drift is *below* a threshold); a distance or divergence
# is large (drift is *above*). ValueDrift's automatic choice flips between "ks" (up to 1,000
# reference rows) and "wasserstein" (above): a spec pins one, so the value means one thing.
# mlops_assets_tests/test_specs.py checks this table against Evidently's own stat tests.
DRIFT_METHODS: dict[str, Literal["p_value", "distance"]] = {
    "wasserstein": "distance",  # Wasserstein distance normed by the reference's std
    "ks": "p_value",  # Kolmogorov-Smirnov
    "anderson": "p_value",  # Anderson-Darling
    "cramer_von_mises": "p_value",
    "es": "p_value",  # Epps-Singleton
    "mannw": "p_value",  # Mann-Whitney U
    "t_test": "p_value",
    "empirical_mmd": "p_value",
    "ed": "distance",  # energy distance
    "hellinger": "distance",
    "jensenshannon": "distance",
    "kl_div": "distance",
    "psi": "distance",
}
DEFAULT_DRIFT_METHOD = "wasserstein"
# The monitoring reference's cap (monitoring.reference_rows). Green taxis' monthly holdouts
# (31-42k rows in the shared months) stay whole under it; at yellow-taxi volume it is 1/28 of
# a month's holdout. BENCHMARKS.md ("A bounded reference") has what the cap does to the daily
# drift and to a day's cost.
DEFAULT_REFERENCE_ROWS = 50_000
# The dummy_metrics columns an alert rule may watch are the daily metrics row's rule fields
# (mlops_core.daily_metrics: DRIFT_METRICS, QUALITY_METRICS, PREDICTION_DRIFT).


OPERATORS = {">": operator.gt, "<": operator.lt}


def threshold_text(threshold: float) -> str:
    """0.2 -> ``0.20``, 1.2 -> ``1.20``; more digits only when the threshold has them."""
    return f"{threshold:.2f}" if round(threshold, 2) == threshold else f"{threshold:g}"


def drift_direction(method: str) -> Literal[">", "<"]:
    """Which way a drift method's value breaches: below for a p-value, above for a distance."""
    return "<" if DRIFT_METHODS.get(method) == "p_value" else ">"


class AlertRule(_Strict):
    """One alert rule: ``metric op threshold`` on ``for_days`` consecutive days.

    A day counts only when it has at least ``min_rows`` trips (a smaller day is recorded in
    ``dummy_metrics`` but never alerted on). A breach is the last day of a run of ``for_days``
    consecutive qualifying days; each (rule, day) is alerted once. ``retrain`` says whether a
    breach requests a retrain. For ``prediction_drift`` the direction and the threshold may be
    left out: they come from the spec's drift method and ``drift_threshold``.
    """

    metric: Literal[RULE_METRICS]  # type: ignore[valid-type]
    op: Literal[">", "<"]
    threshold: float
    min_rows: int = Field(0, ge=0)
    for_days: int = Field(1, ge=1, le=31)
    # Whether a breach asks for a retrain: ``true`` when the retraining policy finds data after
    # the change to learn from (``retraining.days_after_change``), ``at_once`` for a retrain on
    # the trailing window of the breach day itself, as soon as it breaches.
    retrain: bool | Literal["at_once"] = False
    name: str | None = Field(None, pattern=r"^[a-z][a-z0-9_]{0,62}$")

    @property
    def id(self) -> str:
        """What the alert is recorded under: its name, else its metric (unique per spec)."""
        return self.name or self.metric

    def crosses(self, value: float | None) -> bool:
        if value is None or value != value:  # None or NaN: nothing to judge
            return False
        return bool(self.compare(value))

    def compare(self, value):
        """``value op threshold``: the one place the comparison is written. A number gives a
        bool; a SQLAlchemy column gives the same condition as SQL (the stores filter by it)."""
        return OPERATORS[self.op](value, self.threshold)

    def qualifies(self, value: float | None, n_rows: int | None) -> bool:
        """A day that counts towards a breach: enough trips, and the value crosses."""
        return (n_rows or 0) >= self.min_rows and self.crosses(value)

    def condition(self) -> str:
        """``rmse_ratio > 1.20``."""
        return f"{self.metric} {self.op} {threshold_text(self.threshold)}"

    def label(self) -> str:
        """The condition, after the rule's name when it has one: ``slow_days: rmse > 12.50``."""
        return f"{self.name}: {self.condition()}" if self.name else self.condition()

    def describe(self) -> str:
        """The label with its duration and minimum size: ``rmse_ratio > 1.20 for 2 days
        (days with >= 500 trips)``."""
        days = f" for {self.for_days} days" if self.for_days > 1 else ""
        rows = f" (days with >= {self.min_rows} trips)" if self.min_rows else ""
        return f"{self.label()}{days}{rows}"


# Segments: where on the map, when in the day and how far, the daily error is computed by
# (mlops_core/segments.py, table segment_metrics). Boroughs come from the zone lookup (the
# TLC's taxi_zone_lookup.csv; unknown IDs are "Unknown"); hour and distance bands from bounds.
SEGMENT_DIMENSIONS = ("pickup_borough", "dropoff_borough", "hour_band", "distance_band")
# hour_band: four hour bounds cut the day into these five bands, in this order.
HOUR_BANDS = ("night", "morning rush", "midday", "evening rush", "evening")
DEFAULT_HOUR_BOUNDS = (6.0, 10.0, 16.0, 20.0)
# distance_band: miles; n bounds give n + 1 bands.
DEFAULT_DISTANCE_BOUNDS = (1.0, 3.0, 7.0, 15.0)
# A segment with fewer trips than this on a day is recorded but never named in an alert.
DEFAULT_SEGMENT_MIN_ROWS = 50


class Segment(_Strict):
    """One segment dimension: a name from SEGMENT_DIMENSIONS, or a mapping with its bounds
    (``{dimension: distance_band, bounds: [2, 5, 10]}``)."""

    dimension: Literal[SEGMENT_DIMENSIONS]  # type: ignore[valid-type]
    bounds: tuple[float, ...] | None = None

    @model_validator(mode="before")
    @classmethod
    def _from_name(cls, raw):
        raw = {"dimension": raw} if isinstance(raw, str) else raw
        if isinstance(raw, dict) and raw.get("bounds") is None:
            default = {"hour_band": DEFAULT_HOUR_BOUNDS, "distance_band": DEFAULT_DISTANCE_BOUNDS}
            if raw.get("dimension") in default:
                raw = {**raw, "bounds": default[raw["dimension"]]}
        return raw

    @model_validator(mode="after")
    def _bounds(self) -> Segment:
        if self.dimension.endswith("_borough"):
            if self.bounds is not None:
                raise ValueError(f"{self.dimension} comes from the zone lookup and takes no bounds")
            return self
        bounds = self.bounds
        if any(later <= earlier for earlier, later in itertools.pairwise(bounds)):
            raise ValueError(f"{self.dimension} bounds must increase strictly, got {list(bounds)}")
        if self.dimension == "hour_band":
            if len(bounds) != len(HOUR_BANDS) - 1:
                raise ValueError(
                    f"hour_band needs {len(HOUR_BANDS) - 1} bounds (the hours where "
                    f"{', '.join(HOUR_BANDS[1:])} begin), got {len(bounds)}: {list(bounds)}"
                )
            if bounds[0] <= 0 or bounds[-1] >= 24:
                raise ValueError(f"hour_band bounds must lie strictly between 0 and 24, got {list(bounds)}")
        else:
            if not bounds:
                raise ValueError("distance_band needs at least one bound (miles)")
            if bounds[0] <= 0:
                raise ValueError(f"distance_band bounds are miles above 0, got {list(bounds)}")
        return self

    def key(self) -> dict:
        """What identifies the dimension's segments (a holdout's per-segment figures are used
        only for the same dimension with the same bounds)."""
        return {"dimension": self.dimension, "bounds": None if self.bounds is None else list(self.bounds)}


DEFAULT_SEGMENTS = tuple(Segment(dimension=d) for d in SEGMENT_DIMENSIONS)


class Monitoring(_Strict):
    # Filled in by ``load_spec`` from the default threshold (DRIFT_THRESHOLD) when the file
    # does not say; a spec built in code gets 0.20.
    drift_threshold: float = Field(DEFAULT_DRIFT_THRESHOLD, gt=0.0)
    drift_method: str = DEFAULT_DRIFT_METHOD
    # Without rules: the original rule alone (prediction_drift past drift_threshold, 1 day,
    # retrain).
    rules: tuple[AlertRule, ...] = ()
    # The reference every day is compared with: a seeded sample of the model's holdout of at
    # most this many rows, drawn when the model is trained and stored with it (the holdout
    # scores still use the whole holdout). Evidently's cost grows with the reference; at
    # yellow-taxi volume a month's holdout is 1.4 million rows. See DEFAULT_REFERENCE_ROWS.
    reference_rows: int = Field(DEFAULT_REFERENCE_ROWS, ge=1000)
    # Days per run when a backfill of the daily assets (trips → dummy_metrics) is split into
    # runs that Dagster's run queue executes in parallel; None: a backfill of any range is one
    # run. Filled in by ``load_spec`` from MONITORING_BACKFILL_DAYS_PER_RUN when the file does
    # not name it (an explicit ``null`` keeps one run whatever the deployment says).
    backfill_days_per_run: int | None = Field(None, ge=1, strict=True)
    # The segments the day's error is broken down by (default: all four dimensions), and the
    # trips a segment needs on a day to be named in an alert.
    segments: tuple[Segment, ...] = DEFAULT_SEGMENTS
    segment_min_rows: int = Field(DEFAULT_SEGMENT_MIN_ROWS, ge=0)

    @model_validator(mode="before")
    @classmethod
    def _fill_drift_rules(cls, raw):
        """Rules on prediction_drift take the method's direction and drift_threshold when they
        do not say; no rules at all means the original drift rule."""
        if not isinstance(raw, dict):
            return raw
        method = raw.get("drift_method") or DEFAULT_DRIFT_METHOD
        threshold = raw.get("drift_threshold")
        threshold = DEFAULT_DRIFT_THRESHOLD if threshold is None else threshold
        direction = drift_direction(method)
        rules = raw.get("rules")
        if rules is None:
            rules = [{"metric": PREDICTION_DRIFT, "for_days": 1, "retrain": True}]
        if isinstance(rules, list | tuple):
            rules = [
                {"op": direction, "threshold": threshold, **rule}
                if isinstance(rule, dict) and rule.get("metric") == PREDICTION_DRIFT
                else rule
                for rule in rules
            ]
        return {**raw, "drift_method": method, "rules": rules}

    @model_validator(mode="after")
    def _consistent(self) -> Monitoring:
        if self.drift_method not in DRIFT_METHODS:
            raise ValueError(
                f"drift_method {self.drift_method!r} is not one of Evidently's numeric drift methods "
                f"({', '.join(sorted(DRIFT_METHODS))})"
            )
        direction = drift_direction(self.drift_method)
        seen: dict[str, int] = {}
        for i, rule in enumerate(self.rules):
            if rule.metric == PREDICTION_DRIFT and rule.op != direction:
                kind = "a p-value: small means drift" if direction == "<" else "a distance: large means drift"
                raise ValueError(
                    f"rules[{i}].op: {rule.op!r} on prediction_drift contradicts drift_method "
                    f"{self.drift_method!r} ({kind}); use {direction!r} or leave op out"
                )
            if rule.id in seen:
                raise ValueError(
                    f"rules[{i}]: a second rule with id {rule.id!r} (rules[{seen[rule.id]}] has it); "
                    "give one of them a distinct name"
                )
            seen[rule.id] = i
        dimensions: dict[str, int] = {}
        for i, segment in enumerate(self.segments):
            if segment.dimension in dimensions:
                raise ValueError(
                    f"segments[{i}]: dimension {segment.dimension!r} is already segments"
                    f"[{dimensions[segment.dimension]}]; name each dimension once"
                )
            dimensions[segment.dimension] = i
        return self

    def drift_rule(self) -> AlertRule | None:
        return next((r for r in self.rules if r.metric == PREDICTION_DRIFT), None)

    def drift_check_rule(self) -> AlertRule:
        """What the drift check judges days by: the drift rule, else ``drift_threshold`` in
        the method's direction (a spec may alert on other rules only)."""
        return self.drift_rule() or AlertRule(
            metric=PREDICTION_DRIFT, op=drift_direction(self.drift_method), threshold=self.drift_threshold
        )

    def quality_rules(self) -> tuple[AlertRule, ...]:
        return tuple(r for r in self.rules if r.metric in QUALITY_METRICS)


class Retraining(_Strict):
    """How the loop retrains and promotes (the defaults and why: docs/decisions.md, "The loop
    at daily cadence", measured with bench/cadence.py)."""

    window_days: int = Field(28, ge=2, le=366)
    holdout_days: int = Field(7, ge=1)
    min_rows: int = Field(5000, ge=10)
    # When: the retrain of a breach episode waits until this many days, counted from the
    # episode's first breach day, are monitored: its holdout and at least
    # (days_after_change - holdout_days) training days lie after the change.
    days_after_change: int = Field(DEFAULT_DAYS_AFTER_CHANGE, ge=1, le=366)
    # Train only on the days from the change on (else the whole window, pre-change days too).
    window_from_change: bool = DEFAULT_WINDOW_FROM_CHANGE
    # After a candidate that was not promoted (or a refusal), wait this many days before the
    # episode's next attempt; at most max_attempts per episode.
    cooldown_days: int = Field(7, ge=1, le=366)
    max_attempts: int = Field(2, ge=1, le=10)
    # Promotion: candidate and champion compared on the same holdout trips, paired; promoted
    # when the candidate is better at this confidence (training/paired.py).
    confidence: float = Field(0.95, gt=0.5, lt=1.0)
    # Refuse a candidate with fewer training rows per model column (one-hot + numeric).
    min_rows_per_column: float = Field(DEFAULT_MIN_ROWS_PER_COLUMN, ge=0)
    # After a promotion, the previous champion is scored beside the new one for this many
    # days; the new one is rolled back when it is worse by more than rollback_margin minutes
    # of RMSE (paired over the shadow days' trips, at `confidence`), judged from
    # shadow_min_days days on.
    shadow_days: int = Field(DEFAULT_SHADOW_DAYS, ge=0, le=366)
    shadow_min_days: int = Field(3, ge=1, le=366)
    rollback_margin: float = Field(0.0, ge=0)

    @model_validator(mode="after")
    def _holdout_inside_window(self) -> Retraining:
        if self.holdout_days >= self.window_days:
            raise ValueError("holdout_days must be shorter than window_days")
        if self.days_after_change < self.holdout_days + 1:
            raise ValueError(
                f"days_after_change ({self.days_after_change}) must leave at least one training day "
                f"after the change before the holdout (holdout_days {self.holdout_days})"
            )
        if self.days_after_change > self.window_days and not self.window_from_change:
            raise ValueError(
                f"days_after_change ({self.days_after_change}) is longer than window_days "
                f"({self.window_days}): the window would start after the change"
            )
        return self


class Alerting(_Strict):
    # A breach episode (an incident) stays open while a rule keeps breaching and resolves
    # after this many monitored days without a breach of it.
    resolve_after_days: int = Field(DEFAULT_RESOLVE_AFTER_DAYS, ge=1, le=366)
    # While an incident stays open, a reminder every this many days.
    repeat_every_days: int = Field(7, ge=1, le=366)


class ModelSpec(_Strict):
    name: str
    description: str = ""
    taxi_type: Literal["green", "yellow"] = "green"
    target: Literal["duration"] = "duration"
    features: Features
    filters: dict[str, Bounds] = Field(default_factory=lambda: {"duration": Bounds(min=1, max=180)})
    training: Training
    monitoring: Monitoring = Monitoring()
    retraining: Retraining = Retraining()
    alerting: Alerting = Alerting()
    owners: tuple[str, ...] = ()
    source_file: str | None = Field(None, exclude=True)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not NAME_PATTERN.fullmatch(value):
            raise ValueError(
                f"name {value!r} must be lowercase letters, digits and underscores, "
                "starting with a letter (it becomes a Dagster asset key prefix)"
            )
        return value

    def drift_threshold(self) -> float:
        """The threshold of the spec's drift rule (its own, else ``drift_threshold``, which is
        the default the spec was loaded with when the file does not say)."""
        rule = self.monitoring.drift_rule()
        return rule.threshold if rule is not None else self.monitoring.drift_threshold

    @property
    def drift_method(self) -> str:
        return self.monitoring.drift_method

    @property
    def feature_columns(self) -> list[str]:
        return self.features.columns


class SpecError(ValueError):
    """A model spec file that cannot be used; the message names the file and the field."""


def load_spec(
    path: Path,
    default_drift_threshold: float = DEFAULT_DRIFT_THRESHOLD,
    default_backfill_days_per_run: int | None = None,
) -> ModelSpec:
    """The spec in ``path``; a file without ``monitoring.drift_threshold`` or
    ``monitoring.backfill_days_per_run`` gets the default (the deployment's setting)."""
    try:
        raw = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise SpecError(f"model spec {path}: cannot read it as YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise SpecError(f"model spec {path}: expected a mapping at the top level")
    monitoring = raw.get("monitoring")
    if monitoring is None or (isinstance(monitoring, dict) and monitoring.get("drift_threshold") is None):
        raw = {**raw, "monitoring": {**(monitoring or {}), "drift_threshold": default_drift_threshold}}
    if isinstance(raw["monitoring"], dict) and "backfill_days_per_run" not in raw["monitoring"]:
        days = default_backfill_days_per_run
        raw = {**raw, "monitoring": {**raw["monitoring"], "backfill_days_per_run": days}}
    try:
        spec = ModelSpec.model_validate({**raw, "source_file": str(path)})
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '<top>'}: {err['msg']}" for err in exc.errors()
        )
        raise SpecError(f"model spec {path}: {problems}") from exc
    if spec.name != path.stem:
        raise SpecError(f"model spec {path}: name {spec.name!r} must match the file name")
    return spec


def load_specs(
    directory: Path = PACKAGED_SPECS_DIR,
    default_drift_threshold: float = DEFAULT_DRIFT_THRESHOLD,
    default_backfill_days_per_run: int | None = None,
) -> list[ModelSpec]:
    paths = sorted(directory.glob("*.yaml")) + sorted(directory.glob("*.yml"))
    if not paths:
        raise SpecError(f"no model spec (*.yaml) found in {directory}")
    return [load_spec(p, default_drift_threshold, default_backfill_days_per_run) for p in paths]
