"""Daily monitoring assets: ``predictions`` → ``drift_metrics`` → ``dummy_metrics``.

All three are daily-partitioned with a single-run backfill policy: a month backfills in one
run, each asset handling the range in one step. The model used for day *d* is the one in
effect on *d* according to the model timeline in the metrics DB (the first model from the
month after its training month, later ones from their promotion), and it is recorded in
every row and in each partition's metadata, so re-running an old partition after a later
promotion reproduces the old row.
"""

from datetime import date

import dagster as dg
import pandas as pd

from mlops_assets import constants as C
from mlops_assets import settings
from mlops_assets.data.assets import trips_key
from mlops_assets.data.schema import DURATION, PICKUP
from mlops_assets.monitoring import drift
from mlops_assets.monitoring.metrics_db import MetricsDB, day_timestamp, utcnow
from mlops_assets.partitions import daily_partitions
from mlops_assets.specs import ModelSpec
from mlops_assets.training.assets import model_key
from mlops_assets.training.model import PREDICTION, ModelBundle
from mlops_assets.training.registry import ModelRegistry

MODEL_VERSION = "model_version"


class NoModelInEffect(RuntimeError):
    pass


def predictions_key(spec: ModelSpec) -> dg.AssetKey:
    return dg.AssetKey([spec.name, C.PREDICTIONS])


def drift_key(spec: ModelSpec) -> dg.AssetKey:
    return dg.AssetKey([spec.name, C.DRIFT_METRICS])


def dummy_metrics_key(spec: ModelSpec) -> dg.AssetKey:
    return dg.AssetKey([spec.name, C.DUMMY_METRICS])


def report_path(spec: ModelSpec, day: str):
    return settings.mlops_home() / "reports" / spec.name / f"{day}.html"


class BundleCache:
    """Loads each model version once per step."""

    def __init__(self, registry: ModelRegistry, spec: ModelSpec):
        self.registry, self.spec, self._bundles, self._references = registry, spec, {}, {}

    def reference(self, version: str):
        """The model's reference data as an Evidently dataset, built once per version."""
        if version not in self._references:
            bundle = self.get(version)
            self._references[version] = drift.reference_dataset(bundle.reference, bundle.features)
        return self._references[version]

    def get(self, version: str) -> ModelBundle:
        if version not in self._bundles:
            self._bundles[version] = self.registry.load(self.spec.name, version, self.spec.training.artifact)
        return self._bundles[version]


def versions_in_effect(spec: ModelSpec, db: MetricsDB, days: list[str]) -> dict[str, str]:
    """The model version in effect on each day, from the model timeline."""
    timeline = db.timeline(spec.name)
    if not timeline:
        raise NoModelInEffect(
            f"{spec.name}: the metrics DB at {db.describe()} has no model in effect yet; "
            f"materialize {spec.name}/duration_model for {spec.training.month} first"
        )
    out, missing = {}, []
    for day in days:
        entry = MetricsDB.in_effect_on(timeline, date.fromisoformat(day))
        if entry is None:
            missing.append(day)
        else:
            out[day] = entry["model_version"]
    if missing:
        first = timeline[0]
        raise NoModelInEffect(
            f"{spec.name}: no model is in effect on {missing[0]}"
            f"{f' .. {missing[-1]}' if len(missing) > 1 else ''}; the first model "
            f"(v{first['model_version']}) is in effect from {first['effective_from']}"
        )
    return out


def build_monitoring_assets(spec: ModelSpec) -> list[dg.AssetsDefinition]:
    pred_key, drift_metrics_key, table_key = (
        predictions_key(spec),
        drift_key(spec),
        dummy_metrics_key(spec),
    )
    common = {
        "group_name": spec.name,
        "partitions_def": daily_partitions,
        "backfill_policy": dg.BackfillPolicy.single_run(),
        "owners": list(spec.owners),
    }

    @dg.asset(
        key=pred_key,
        ins={"trips": dg.AssetIn(key=trips_key(spec))},
        deps=[model_key(spec)],
        io_manager_key=C.PARQUET_IO,
        kinds={C.KIND_PANDAS, C.KIND_SKLEARN},
        tags={"stage": "monitoring"},
        description=(
            "The day's trips scored by the model in effect that day (the champion of the model "
            "timeline): features, actual duration, `prediction` (NaN for rows the model cannot "
            "score) and `model_version`."
        ),
        **common,
    )
    def predictions(
        context: dg.AssetExecutionContext,
        trips: dict[str, pd.DataFrame],
        metrics_db: MetricsDB,
        model_registry: ModelRegistry,
    ):
        days = list(context.partition_keys)
        versions = versions_in_effect(spec, metrics_db, days)
        bundles = BundleCache(model_registry, spec)
        out = {}
        for i, day in enumerate(days, 1):
            bundle = bundles.get(versions[day])
            frame = trips[day][[PICKUP, *spec.feature_columns, DURATION]].copy()
            frame[PREDICTION] = bundle.predict(frame)
            frame[MODEL_VERSION] = versions[day]
            out[day] = frame
            context.add_asset_metadata(
                {
                    "rows": dg.MetadataValue.int(len(frame)),
                    "scored": dg.MetadataValue.int(int(frame[PREDICTION].notna().sum())),
                    "model_version": dg.MetadataValue.text(versions[day]),
                },
                partition_key=day,
            )
            if i % 7 == 0 or i == len(days):
                context.log.info("predictions: %d/%d days scored", i, len(days))
        return dg.MaterializeResult(
            value=out,
            metadata={"model_versions": ", ".join(sorted(set(versions.values()), key=int))},
        )

    @dg.asset(
        key=drift_metrics_key,
        ins={"predictions": dg.AssetIn(key=pred_key)},
        io_manager_key=C.PARQUET_IO,
        kinds={C.KIND_PANDAS, "evidently"},
        tags={"stage": "monitoring"},
        description=(
            "Evidently 0.7 report of the day against the reference data of the model in effect: "
            "`prediction_drift` (ValueDrift, default method: Wasserstein distance normed by the "
            "reference std), `num_drifted_columns` (DriftedColumnsCount over the features), "
            "`share_missing_values` (over the features). The HTML report is saved under "
            "MLOPS_HOME/reports. A day without trips has no metrics (null), never 0."
        ),
        check_specs=[
            dg.AssetCheckSpec(
                C.CHECK_DRIFT_THRESHOLD,
                asset=drift_metrics_key,
                description="Warns when a day's prediction drift exceeds the threshold",
            )
        ],
        **common,
    )
    def drift_metrics(
        context: dg.AssetExecutionContext,
        predictions: dict[str, pd.DataFrame],
        model_registry: ModelRegistry,
        metrics_db: MetricsDB,
    ):
        threshold = spec.drift_threshold()
        bundles = BundleCache(model_registry, spec)
        out, breaches = {}, []
        days = list(context.partition_keys)
        for i, day in enumerate(days, 1):
            frame = predictions[day]
            version = str(frame[MODEL_VERSION].iloc[0]) if len(frame) else None
            if version is None:  # no trips that day: the version in effect is still recorded
                version = versions_in_effect(spec, metrics_db, [day])[day]
            bundle = bundles.get(version)
            metrics, snapshot = drift.compute(frame, bundles.reference(version), bundle.features)
            path = None
            if snapshot is not None:
                path = drift.save_html(snapshot, report_path(spec, day))
            row = {
                "model_name": spec.name,
                "timestamp": day_timestamp(day),
                MODEL_VERSION: version,
                "prediction_drift": metrics.prediction_drift,
                "num_drifted_columns": metrics.num_drifted_columns,
                "share_missing_values": metrics.share_missing_values,
                "n_rows": metrics.n_rows,
                "n_scored": metrics.n_scored,
                "drift_threshold": threshold,
                "report_path": str(path) if path else None,
                "dagster_run_id": context.run.run_id,
            }
            out[day] = pd.DataFrame([row])
            md = {
                "rows": dg.MetadataValue.int(metrics.n_rows),
                "model_version": dg.MetadataValue.text(version),
                "drift_threshold": dg.MetadataValue.float(threshold),
            }
            if metrics.prediction_drift is not None:
                md["prediction_drift"] = dg.MetadataValue.float(metrics.prediction_drift)
                if metrics.prediction_drift > threshold:
                    breaches.append((day, metrics.prediction_drift))
            else:
                md["prediction_drift"] = dg.MetadataValue.text(
                    "no trips" if metrics.n_rows == 0 else "no scored rows"
                )
            if metrics.num_drifted_columns is not None:
                md["num_drifted_columns"] = dg.MetadataValue.int(metrics.num_drifted_columns)
                md["share_missing_values"] = dg.MetadataValue.float(metrics.share_missing_values)
            if path:
                md["report"] = dg.MetadataValue.path(str(path))
            context.add_asset_metadata(md, partition_key=day)
            context.log.info(
                "drift %s (%d/%d): %s on %d rows, model v%s",
                day,
                i,
                len(days),
                "n/a" if metrics.prediction_drift is None else f"{metrics.prediction_drift:.4f}",
                metrics.n_rows,
                version,
            )
        worst = max(breaches, key=lambda b: b[1]) if breaches else None
        check = dg.AssetCheckResult(
            asset_key=drift_metrics_key,
            check_name=C.CHECK_DRIFT_THRESHOLD,
            passed=not breaches,
            severity=dg.AssetCheckSeverity.WARN,
            metadata={
                "threshold": threshold,
                "days_above_threshold": len(breaches),
                "breach_days": ", ".join(d for d, _ in breaches) or "none",
                "worst": f"{worst[0]}: {worst[1]:.4f}" if worst else "none",
            },
            description=(
                f"prediction drift above {threshold:.2f} on {len(breaches)} day(s)" if breaches else None
            ),
        )
        return dg.MaterializeResult(value=out, check_results=[check])

    @dg.asset(
        key=table_key,
        ins={"drift_metrics": dg.AssetIn(key=drift_metrics_key)},
        kinds={"postgres", "sqlite"},
        tags={"stage": "monitoring"},
        retry_policy=dg.RetryPolicy(max_retries=2, delay=2, backoff=dg.Backoff.EXPONENTIAL),
        description=(
            "The day's row in table `dummy_metrics` of the metrics DB (METRICS_DATABASE_URL; "
            "SQLite by default), upserted on (model_name, timestamp) in one transaction for the "
            "whole run: re-materializing leaves exactly one row per model and day. Grafana and "
            "the drift alert sensor read it."
        ),
        **common,
    )
    def dummy_metrics(
        context: dg.AssetExecutionContext,
        drift_metrics: dict[str, pd.DataFrame],
        metrics_db: MetricsDB,
    ) -> dg.MaterializeResult:
        computed_at = utcnow()
        rows = []
        for day in context.partition_keys:
            row = drift_metrics[day].iloc[0].to_dict()
            row = {k: (None if pd.isna(v) else v) for k, v in row.items()}
            for key in ("n_rows", "n_scored", "num_drifted_columns"):
                if row.get(key) is not None:
                    row[key] = int(row[key])
            row["timestamp"] = pd.Timestamp(row["timestamp"]).to_pydatetime()
            row["computed_at"] = computed_at
            row["dagster_run_id"] = context.run.run_id
            rows.append(row)
        written = metrics_db.upsert_metrics(rows)
        for row in rows:
            day = row["timestamp"].date().isoformat()
            md = {
                "model_version": dg.MetadataValue.text(str(row[MODEL_VERSION])),
                "rows": row["n_rows"],
            }
            if row["prediction_drift"] is not None:
                md["prediction_drift"] = dg.MetadataValue.float(row["prediction_drift"])
            context.add_asset_metadata(md, partition_key=day)
        context.log.info("upserted %d row(s) into dummy_metrics at %s", written, metrics_db.describe())
        return dg.MaterializeResult(metadata={"database": metrics_db.describe(), "rows_upserted": written})

    return [predictions, drift_metrics, dummy_metrics]
