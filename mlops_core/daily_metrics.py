"""The daily metrics row: one model's figures for one monitored day, defined once.

``DailyMetrics`` is what monitoring computes for a day, what the ``drift_metrics`` asset
stores, what its checks and the alert rules judge, and one row of table ``dummy_metrics``:
the table's columns are this dataclass's fields (``mlops_assets.monitoring.store``), and the
metrics an alert rule may watch are the fields marked ``rule`` here (``mlops_core.specs``
validates rules against them). A new daily figure is one field here (and an Alembic
revision that adds its column).

Fields marked ``rule="drift"`` describe the data and the predictions, ``rule="quality"`` the
model's error from the actual durations; both carry the sentence an alert email uses to say
what the metric is. ``None`` means "not computed" (no trips, nothing scored), never 0.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

RuleKind = Literal["drift", "quality"]


def column(
    doc: str = "",
    *,
    rule: RuleKind | None = None,
    length: int | None = None,
    not_null: bool = False,
    default: Any = None,
) -> Any:
    """A column of the row: ``doc`` says what it is (alert emails quote it for rule metrics),
    ``rule`` whether and how an alert rule may watch it, ``length`` the SQL string length
    (``None``: unbounded text), ``not_null`` whether the table requires a value (a row
    being computed may still lack it: ``computed_at`` is set when the row is written)."""
    return field(
        default=default,
        metadata={"column": True, "doc": doc, "rule": rule, "length": length, "nullable": not not_null},
    )


@dataclass(frozen=True)
class ColumnDrift:
    """One feature column's drift that day: Evidently's score, the method and threshold it
    chose, and whether its test found the column drifted."""

    column: str
    score: float
    method: str
    threshold: float
    drifted: bool


@dataclass(frozen=True)
class DailyMetrics:
    model_name: str | None = column("the model spec's name", length=100, not_null=True)
    # The monitored day, 00:00 New York wall clock (the TLC's clock), as the original design.
    timestamp: datetime | None = column("the monitored day (00:00, New York wall clock)", not_null=True)
    n_rows: int = column("the day's trips", not_null=True, default=0)
    n_scored: int = column("the day's trips the model could score", not_null=True, default=0)
    model_version: str | None = column("the model version in effect that day", length=50)
    prediction_drift: float | None = column(
        "Evidently ValueDrift on the model's predictions vs its reference data", rule="drift"
    )
    num_drifted_columns: int | None = column(
        "features whose distribution drifted (Evidently ValueDrift per feature)", rule="drift"
    )
    # Comma-separated, "" for none (None without trips).
    drifted_columns: str | None = column("the feature columns Evidently found drifted")
    share_missing_values: float | None = column("share of missing feature values", rule="drift")
    drift_threshold: float | None = column("the drift rule's threshold the day was judged by")
    # Evidently's method behind prediction_drift (the spec pins it: wasserstein by default).
    drift_method: str | None = column("Evidently's method behind prediction_drift", length=32)
    rmse: float | None = column("the day's RMSE in minutes, from the actual durations", rule="quality")
    mae: float | None = column("the day's mean absolute error in minutes", rule="quality")
    mean_error: float | None = column(
        "the day's mean of prediction minus actual, minutes (the bias)", rule="quality"
    )
    rmse_ratio: float | None = column(
        "the day's RMSE over the holdout RMSE of the model in effect", rule="quality"
    )
    holdout_rmse: float | None = column("the holdout RMSE of the model in effect")
    # After a promotion, the previous champion scored on the same trips (training/paired.py):
    # its version, the trips both scored, its RMSE on them, and the mean and standard deviation
    # over those trips of (new error)² − (old error)²: a paired comparison pools these exactly.
    shadow_version: str | None = column("the previous champion, scored beside the new one", length=50)
    shadow_n: int | None = column("the trips both the champion and the previous one scored")
    shadow_rmse: float | None = column("the previous champion's RMSE on the same trips, minutes")
    shadow_mse_diff: float | None = column("mean of (champion error)² − (previous error)² over those trips")
    shadow_mse_diff_sd: float | None = column("its standard deviation over those trips")
    report_path: str | None = column("the day's Evidently HTML report")
    dagster_run_id: str | None = column("the Dagster run that computed the row", length=64)
    computed_at: datetime | None = column("when the row was written (UTC)", not_null=True)
    # Not a column: each feature's drift that day, for the day's metadata and report.
    feature_drift: tuple[ColumnDrift, ...] = field(default=(), metadata={"column": False})

    def as_dict(self) -> dict[str, Any]:
        """The row's columns (what the table and the stored frame hold)."""
        return {f.name: getattr(self, f.name) for f in FIELDS}

    @property
    def drifted_column_names(self) -> list[str] | None:
        """The drifted feature columns as a list (None without trips)."""
        if self.drifted_columns is None:
            return None
        return [c for c in self.drifted_columns.split(", ") if c]

    @classmethod
    def from_mapping(cls, values: dict[str, Any]) -> DailyMetrics:
        """A row from a mapping with its columns (a table row, a stored frame's record):
        NaN and pandas' missing values read as None, whole numbers of int fields as ints, and
        timestamps as naive ``datetime``. Unknown keys (``id``) are ignored."""
        out = {}
        for f in FIELDS:
            if f.name not in values:
                continue
            value = values[f.name]
            if _missing(value):
                value = None
            elif f.name in INT_FIELDS:
                value = int(value)
            elif f.name in TIME_FIELDS and hasattr(value, "to_pydatetime"):
                value = value.to_pydatetime()
            elif f.name in FLOAT_FIELDS:
                value = float(value)
            out[f.name] = value
        return cls(**out)

    def replace(self, **changes: Any) -> DailyMetrics:
        return dataclasses.replace(self, **changes)


def _missing(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    return type(value).__name__ in ("NAType", "NaTType")


# The table's columns, in order.
FIELDS = tuple(f for f in dataclasses.fields(DailyMetrics) if f.metadata.get("column"))
INT_FIELDS = frozenset(f.name for f in FIELDS if f.type in ("int", "int | None"))
FLOAT_FIELDS = frozenset(f.name for f in FIELDS if f.type in ("float", "float | None"))
TIME_FIELDS = frozenset(f.name for f in FIELDS if f.type in ("datetime", "datetime | None"))

# The metrics an alert rule may watch, drift ones first (numeric, one value per model and day).
DRIFT_METRICS = tuple(f.name for f in FIELDS if f.metadata["rule"] == "drift")
QUALITY_METRICS = tuple(f.name for f in FIELDS if f.metadata["rule"] == "quality")
RULE_METRICS = (*DRIFT_METRICS, *QUALITY_METRICS)
PREDICTION_DRIFT = "prediction_drift"


def describe(metric: str) -> str:
    """What a metric is, in a sentence an alert email can quote (the metric's name if unknown)."""
    for f in FIELDS:
        if f.name == metric:
            return f.metadata["doc"] or metric
    return metric
