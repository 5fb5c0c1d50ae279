"""Daily monitoring assets: ``predictions`` → ``drift_metrics`` → ``dummy_metrics``.

All three are daily-partitioned with the spec's backfill policy (``partitions.py``: one run
for any range, or runs of ``monitoring.backfill_days_per_run`` days that the run queue runs
in parallel). In a run each asset handles its range in one step, one day at a time (input
days are read when looked up, output days computed as they are stored: ``lib/io.py``),
so a run's memory is set by its largest day, not by how many days it covers. The model used
for day *d* is the one in effect on *d* according to the model timeline in the metrics DB
(``training/timeline.py``), and it is recorded in every row and in each partition's metadata,
so re-running an old partition after a later promotion reproduces the old row.

The decorated functions are thin: scoring is ``scoring.py``, the Evidently figures
``evidently_metrics.py``, the day's row and metadata ``daily.py``, the checks ``checks.py``,
the table ``store.py``.
"""

import json

import dagster as dg
import pandas as pd

from mlops_assets import constants as C
from mlops_assets.data.sources import TripSource
from mlops_assets.keys import drift_key, dummy_metrics_key, model_key, predictions_key, trips_key
from mlops_assets.lib.io import DayFrames, DayStream
from mlops_assets.lib.storage.engine import MetricsDB, utcnow
from mlops_assets.monitoring import evidently_metrics as E
from mlops_assets.monitoring.checks import check_specs, day_checks, day_targets
from mlops_assets.monitoring.daily import (
    day_metadata,
    day_row,
    report_title,
    shadow_figures,
    table_row_metadata,
)
from mlops_assets.monitoring.reports import ReportStore
from mlops_assets.monitoring.scoring import (
    MODEL_VERSION,
    BundleCache,
    predictions_metadata,
    score_day,
    shadows_in_effect,
    versions_in_effect,
)
from mlops_assets.monitoring.segments import segment_rows, segments_html, segments_markdown
from mlops_assets.monitoring.store import DailyMetricsStore
from mlops_assets.partitions import daily_backfill_policy, daily_partitions
from mlops_assets.training.registry_resource import ModelRegistry
from mlops_core.daily_metrics import DailyMetrics
from mlops_core.segments import day_segments
from mlops_core.specs import ModelSpec

# The drift_metrics frame's column carrying the day's segment rows (JSON) to dummy_metrics.
SEGMENTS = "segments_json"


def common_args(spec: ModelSpec) -> dict:
    return {
        "group_name": spec.name,
        "partitions_def": daily_partitions,
        "backfill_policy": daily_backfill_policy(spec),
        "owners": list(spec.owners),
    }


def build_predictions_asset(spec: ModelSpec) -> dg.AssetsDefinition:
    @dg.asset(
        key=predictions_key(spec),
        ins={"trips": dg.AssetIn(key=trips_key(spec))},
        deps=[model_key(spec)],
        io_manager_key=C.PARQUET_IO,
        kinds={C.KIND_PANDAS, C.KIND_SKLEARN},
        tags={"stage": "monitoring"},
        description=(
            "The day's trips scored by the model in effect that day (the champion of the model "
            "timeline): features, actual duration, `prediction` (NaN for rows the model cannot "
            "score) and `model_version`; for retraining.shadow_days after a promotion also the "
            "previous champion's `shadow_prediction` and `shadow_version` on the same trips."
        ),
        **common_args(spec),
    )
    def predictions(
        context: dg.AssetExecutionContext,
        trips: DayFrames,
        metrics_db: MetricsDB,
        model_registry: ModelRegistry,
    ):
        days = list(context.partition_keys)
        versions = versions_in_effect(spec, metrics_db, days, model_registry)
        shadows = shadows_in_effect(spec, metrics_db, days)
        bundles = BundleCache(model_registry, spec)
        done = iter(range(1, len(days) + 1))

        def score(day: str) -> pd.DataFrame:  # one day at a time, as the IO manager stores it
            shadow = (bundles.get(shadows[day]), shadows[day]) if day in shadows else None
            frame = score_day(spec, trips[day], bundles.get(versions[day]), versions[day], shadow)
            context.add_asset_metadata(predictions_metadata(frame, versions[day]), partition_key=day)
            i = next(done)
            if i % 7 == 0 or i == len(days):
                context.log.info("predictions: %d/%d days scored", i, len(days))
            return frame

        return dg.MaterializeResult(
            value=DayStream.of(days, score),
            metadata={"model_versions": ", ".join(sorted(set(versions.values()), key=int))},
        )

    return predictions


def build_daily_metrics_asset(spec: ModelSpec) -> dg.AssetsDefinition:
    """``drift_metrics``: the day's drift and model-quality figures (its name is the original
    design's; the row has both)."""
    key = drift_key(spec)

    @dg.asset(
        key=key,
        ins={"predictions": dg.AssetIn(key=predictions_key(spec))},
        io_manager_key=C.PARQUET_IO,
        kinds={C.KIND_PANDAS, "evidently"},
        tags={"stage": "monitoring"},
        description=(
            "One Evidently 0.7 report per day against the reference data of the model in effect: "
            f"`prediction_drift` (ValueDrift, method `{spec.drift_method}`), `num_drifted_columns` "
            "and `drifted_columns` (a ValueDrift and Evidently's drift test per feature), "
            "`share_missing_values` (over the features), "
            "and the model's quality from the actual durations: `rmse`, `mae`, `mean_error` "
            "(prediction minus actual, minutes) and `rmse_ratio` (the day's RMSE over the model's "
            "holdout RMSE). The HTML report is saved under MLOPS_HOME/reports. A day without "
            "trips has no metrics (null), never 0. Also the day's error per segment "
            "(`monitoring.segments`: boroughs, hour and distance bands), written to table "
            "`segment_metrics` by `dummy_metrics`, shown in the report and, worst first, in the "
            "partition's metadata."
        ),
        check_specs=check_specs(spec, key),
        **common_args(spec),
    )
    def drift_metrics(
        context: dg.AssetExecutionContext,
        predictions: DayFrames,
        model_registry: ModelRegistry,
        metrics_db: MetricsDB,
        reports: ReportStore,
        trip_source: TripSource,
    ):
        threshold = spec.drift_threshold()
        zones = trip_source.zone_lookup()
        min_rows = spec.monitoring.segment_min_rows
        bundles = BundleCache(model_registry, spec)
        rows: list[DailyMetrics] = []
        days = list(context.partition_keys)

        def judge(day: str) -> pd.DataFrame:  # one day at a time, as the IO manager stores it
            frame = predictions[day]
            version = str(frame[MODEL_VERSION].iloc[0]) if len(frame) else None
            if version is None:  # no trips that day: the version in effect is still recorded
                version = versions_in_effect(spec, metrics_db, [day])[day]
            bundle = bundles.get(version)
            figures, snapshot = E.compute(
                frame, bundles.reference(version), bundle.features, spec.drift_method, threshold
            )
            segments = segment_rows(
                day_segments(frame, spec.monitoring.segments, zones, bundle.info.holdout_segments), version
            )
            report = (
                reports.save(
                    snapshot,
                    spec.name,
                    day,
                    report_title(spec, day, version, figures, bundle),
                    segments_html(segments, min_rows) if segments else None,
                )
                if snapshot is not None
                else None
            )
            row = day_row(
                spec,
                day,
                version,
                figures,
                report,
                threshold,
                context.run.run_id,
                bundle.info.holdout.rmse,
                shadow_figures(frame),
            )
            rows.append(row)
            md = day_metadata(row, report, reports)
            if segments:
                md["segments"] = dg.MetadataValue.md(segments_markdown(segments, min_rows=min_rows))
            context.add_asset_metadata(md, partition_key=day)
            context.log.info(
                "drift %s (%d/%d): %s, rmse %s (x%s) on %d rows, model v%s",
                day,
                len(rows),
                len(days),
                "n/a" if row.prediction_drift is None else f"{row.prediction_drift:.4f}",
                "n/a" if row.rmse is None else f"{row.rmse:.3f}",
                "n/a" if row.rmse_ratio is None else f"{row.rmse_ratio:.2f}",
                row.n_rows,
                version,
            )
            # The segment rows ride with the day's row to dummy_metrics, which writes both.
            return pd.DataFrame([{**row.as_dict(), SEGMENTS: json.dumps(segments)}])

        # The days' materializations first (stored, and so computed, one day at a time), then
        # each judged day's checks on its partition.
        yield dg.MaterializeResult(value=DayStream.of(days, judge))
        targets = day_targets(context.instance, key, days)
        yield from day_checks(spec, key, rows, context.selected_asset_check_keys, targets)

    return drift_metrics


def build_dummy_metrics_asset(spec: ModelSpec) -> dg.AssetsDefinition:
    @dg.asset(
        key=dummy_metrics_key(spec),
        ins={"drift_metrics": dg.AssetIn(key=drift_key(spec))},
        kinds={"postgres", "sqlite"},
        tags={"stage": "monitoring"},
        retry_policy=dg.RetryPolicy(max_retries=2, delay=2, backoff=dg.Backoff.EXPONENTIAL),
        description=(
            "The day's row in table `dummy_metrics` of the metrics DB (METRICS_DATABASE_URL; "
            "SQLite by default), upserted on (model_name, timestamp) in one transaction for the "
            "whole run: re-materializing leaves exactly one row per model and day. Grafana and "
            "the drift alert sensor read it. In the same transaction, the day's rows of table "
            "`segment_metrics` (one per dimension and segment) replace the day's earlier ones."
        ),
        **common_args(spec),
    )
    def dummy_metrics(
        context: dg.AssetExecutionContext,
        drift_metrics: DayFrames,
        metrics_db: MetricsDB,
    ) -> dg.MaterializeResult:
        computed_at = utcnow()
        rows, segments = [], {}
        for day in context.partition_keys:
            stored = drift_metrics[day].iloc[0].to_dict()
            row = DailyMetrics.from_mapping(stored).replace(
                computed_at=computed_at, dagster_run_id=context.run.run_id
            )
            rows.append(row)
            # A day stored before segments existed has none (its old segment rows are kept).
            if isinstance(stored.get(SEGMENTS), str):
                day_rows = json.loads(stored[SEGMENTS])
                segments[row.timestamp] = [{**r, "computed_at": computed_at} for r in day_rows]
        written = DailyMetricsStore(metrics_db).upsert(rows, segments=segments)
        for row in rows:
            context.add_asset_metadata(
                table_row_metadata(row), partition_key=row.timestamp.date().isoformat()
            )
        context.log.info("upserted %d row(s) into dummy_metrics at %s", written, metrics_db.describe())
        return dg.MaterializeResult(metadata={"database": metrics_db.describe(), "rows_upserted": written})

    return dummy_metrics


def build_monitoring_assets(spec: ModelSpec) -> list[dg.AssetsDefinition]:
    return [build_predictions_asset(spec), build_daily_metrics_asset(spec), build_dummy_metrics_asset(spec)]
