"""A monitored day's row and what people see of it: the ``DailyMetrics`` of a day (Evidently's
figures, which model and day, ``rmse_ratio``, the report), the report's title, and each
partition's metadata in the Dagster UI."""

from __future__ import annotations

import math

import dagster as dg
import pandas as pd

from mlops_assets.lib.storage.engine import day_timestamp
from mlops_assets.monitoring.reports import ReportStore
from mlops_assets.monitoring.scoring import SHADOW_PREDICTION, SHADOW_VERSION
from mlops_assets.training.paired import Moments
from mlops_core.bundle import PREDICTION, ModelBundle
from mlops_core.daily_metrics import QUALITY_METRICS, DailyMetrics
from mlops_core.schema import DURATION
from mlops_core.specs import ModelSpec


def rmse_ratio(rmse: float | None, holdout_rmse: float | None) -> float | None:
    """The day's RMSE over the holdout RMSE of the model in effect (1.0: as good as on its
    holdout); None when either is missing."""
    if rmse is None or not holdout_rmse:
        return None
    return rmse / holdout_rmse


def day_row(
    spec: ModelSpec,
    day: str,
    version: str,
    figures: DailyMetrics,
    report,
    threshold: float,
    run_id: str,
    holdout_rmse: float | None = None,
    shadow: dict | None = None,
) -> DailyMetrics:
    """The day's row: Evidently's ``figures`` with which model and day, the threshold, the
    report and ``rmse_ratio`` (``computed_at`` is set when it is written)."""
    return figures.replace(
        model_name=spec.name,
        timestamp=day_timestamp(day),
        model_version=version,
        drift_threshold=threshold,
        report_path=str(report) if report else None,
        dagster_run_id=run_id,
        rmse_ratio=rmse_ratio(figures.rmse, holdout_rmse),
        holdout_rmse=holdout_rmse,
        **(shadow or {}),
    )


def shadow_figures(frame: pd.DataFrame) -> dict:
    """The day's shadow columns from a scored frame that has the previous champion's
    predictions (empty otherwise): the paired moments of the two models' squared errors."""
    if SHADOW_PREDICTION not in frame or not len(frame):
        return {}
    actual = frame[DURATION].to_numpy(dtype="float64")
    moments = Moments.of(frame[PREDICTION].to_numpy(dtype="float64") - actual,
                         frame[SHADOW_PREDICTION].to_numpy(dtype="float64") - actual)  # fmt: skip
    version = str(frame[SHADOW_VERSION].iloc[0])
    if moments.n == 0:
        return {"shadow_version": version, "shadow_n": 0}
    return {
        "shadow_version": version,
        "shadow_n": moments.n,
        "shadow_rmse": math.sqrt(moments.old_mse),
        "shadow_mse_diff": moments.mean,
        "shadow_mse_diff_sd": moments.sd,
    }


def report_title(spec: ModelSpec, day: str, version: str, metrics: DailyMetrics, bundle: ModelBundle) -> str:
    """The heading of a day's Evidently report: which model, day and version, and its figures."""
    parts = [f"{spec.name} · {day} · model v{version} · {metrics.n_rows:,} trips"]
    if metrics.prediction_drift is not None:
        parts.append(f"prediction drift {metrics.prediction_drift:.4f} ({metrics.drift_method})")
    if metrics.rmse is not None:
        ratio = rmse_ratio(metrics.rmse, bundle.info.holdout.rmse)
        parts.append(
            f"RMSE {metrics.rmse:.2f} min" + (f" ({ratio:.2f}x its holdout's)" if ratio is not None else "")
        )
    names = metrics.drifted_column_names
    if names is not None:
        parts.append(f"drifted feature columns: {', '.join(names)}" if names else "no drifted feature column")
    return " · ".join(parts)


def feature_drift_table(metrics: DailyMetrics) -> str:
    """Each feature column's drift as a Markdown table (the asset's metadata shows it)."""
    lines = ["| column | drift score | method | threshold | drifted |", "|---|---|---|---|---|"]
    lines += [
        f"| {c.column} | {c.score:.4f} | {c.method} | {c.threshold:g} | {'yes' if c.drifted else 'no'} |"
        for c in metrics.feature_drift
    ]
    return "\n".join(lines)


def day_metadata(row: DailyMetrics, report, reports: ReportStore | None = None) -> dict:
    """Per-partition metadata of a day's row: numbers as numbers, so the asset page plots
    them over days (prediction drift, RMSE, bias, rmse_ratio); the drifted feature columns by
    name, and each feature's drift as a table when the row has them; the report as a link
    when ``reports`` has a base URL (REPORTS_URL), else as a path."""
    md = {
        "rows": dg.MetadataValue.int(row.n_rows),
        "model_version": dg.MetadataValue.text(row.model_version),
        "drift_threshold": dg.MetadataValue.float(row.drift_threshold),
        "drift_method": dg.MetadataValue.text(row.drift_method),
    }
    if row.prediction_drift is not None:
        md["prediction_drift"] = dg.MetadataValue.float(row.prediction_drift)
    else:
        md["prediction_drift"] = dg.MetadataValue.text("no trips" if row.n_rows == 0 else "no scored rows")
    if row.num_drifted_columns is not None:
        md["num_drifted_columns"] = dg.MetadataValue.int(row.num_drifted_columns)
        md["drifted_columns"] = dg.MetadataValue.text(row.drifted_columns or "none")
        md["share_missing_values"] = dg.MetadataValue.float(row.share_missing_values)
    if row.shadow_version is not None:
        md["shadow_version"] = dg.MetadataValue.text(row.shadow_version)
        if row.shadow_rmse is not None:
            md["shadow_rmse"] = dg.MetadataValue.float(row.shadow_rmse)
    for column in (*QUALITY_METRICS, "holdout_rmse"):
        value = getattr(row, column)
        if value is not None:
            md[column] = dg.MetadataValue.float(value)
    if row.feature_drift:
        md["feature_drift"] = dg.MetadataValue.md(feature_drift_table(row))
    if report:
        md["report"] = reports.link(report) if reports is not None else dg.MetadataValue.path(str(report))
    return md


def table_row_metadata(row: DailyMetrics) -> dict:
    """A written row's metadata on ``dummy_metrics``' partition."""
    md = {"model_version": dg.MetadataValue.text(str(row.model_version)), "rows": row.n_rows}
    for column in ("prediction_drift", *QUALITY_METRICS):
        value = getattr(row, column)
        if value is not None:
            md[column] = dg.MetadataValue.float(value)
    return md
