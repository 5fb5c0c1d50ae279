"""Daily monitoring assets: ``predictions`` → ``drift_metrics`` → ``dummy_metrics``.

All three are daily-partitioned with the spec's backfill policy (``partitions.py``: one run
for any range, or runs of ``monitoring.backfill_days_per_run`` days that the run queue runs
in parallel). In a run each asset handles its range in one step, one day at a time (input
days are read when looked up, output days computed as they are stored: ``mlops_assets.io``),
so a run's memory is set by its largest day, not by how many days it covers. The model used
for day *d* is the one in effect on *d* according to the model timeline in the metrics DB
(the first model from the month after its training month, later ones from their promotion),
and it is recorded in every row and in each partition's metadata, so re-running an old
partition after a later promotion reproduces the old row.

Each asset's decorator is in its own ``build_*`` function; what it computes per day (a
scored frame, a metrics row, its metadata, the check) is in the named functions above them.
"""

import warnings
from datetime import date

import dagster as dg
import pandas as pd

# Not exported by dagster, but a documented argument of dg.AssetCheckEvaluation: the check
# result of a day points at that day's materialization, so the UI counts it as current
# (the check's Partitions view shows passed/failed days; without it every day reads missing).
from dagster._core.definitions.asset_checks.asset_check_evaluation import (
    AssetCheckEvaluationTargetMaterializationData as CheckTarget,
)

from mlops_assets import constants as C
from mlops_assets.io import DayFrames, DayStream
from mlops_assets.keys import drift_key, dummy_metrics_key, model_key, predictions_key, trips_key
from mlops_assets.metrics_db import MetricsDB, day_timestamp, utcnow
from mlops_assets.monitoring import drift
from mlops_assets.monitoring.reports import ReportStore
from mlops_assets.partitions import daily_backfill_policy, daily_partitions
from mlops_assets.training.registry import ModelRegistry
from mlops_core.bundle import PREDICTION, ModelBundle
from mlops_core.schema import DURATION, PICKUP
from mlops_core.specs import AlertRule, ModelSpec, threshold_text

MODEL_VERSION = "model_version"


class NoModelInEffect(RuntimeError):
    pass


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


def versions_in_effect(
    spec: ModelSpec, db: MetricsDB, days: list[str], registry: ModelRegistry | None = None
) -> dict[str, str]:
    """The model version in effect on each day, from the model timeline (``registry``: to say
    why there is none when promotion refused the spec's models)."""
    timeline = db.timeline(spec.name)
    if not timeline:
        refused = registry.refusal(spec.name) if registry is not None else None
        raise NoModelInEffect(
            f"{spec.name}: the metrics DB at {db.describe()} has no model in effect yet; "
            + (
                f"no model of this spec was accepted ({refused}); monitoring needs one that beats "
                "the mean predictor"
                if refused
                else f"materialize {spec.name}/duration_model for {spec.training.month} first"
            )
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


def common_args(spec: ModelSpec) -> dict:
    return {
        "group_name": spec.name,
        "partitions_def": daily_partitions,
        "backfill_policy": daily_backfill_policy(spec),
        "owners": list(spec.owners),
    }


# --- predictions ------------------------------------------------------------------------------
def score_day(spec: ModelSpec, trips: pd.DataFrame, bundle: ModelBundle, version: str) -> pd.DataFrame:
    """The day's trips with the model's ``prediction`` (NaN where not scorable) and version."""
    frame = trips[[PICKUP, *spec.feature_columns, DURATION]].copy()
    frame[PREDICTION] = bundle.predict(frame)
    frame[MODEL_VERSION] = version
    return frame


def predictions_metadata(frame: pd.DataFrame, version: str) -> dict:
    return {
        "rows": dg.MetadataValue.int(len(frame)),
        "scored": dg.MetadataValue.int(int(frame[PREDICTION].notna().sum())),
        "model_version": dg.MetadataValue.text(version),
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
            "score) and `model_version`."
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
        bundles = BundleCache(model_registry, spec)
        done = iter(range(1, len(days) + 1))

        def score(day: str) -> pd.DataFrame:  # one day at a time, as the IO manager stores it
            frame = score_day(spec, trips[day], bundles.get(versions[day]), versions[day])
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


# --- drift_metrics ----------------------------------------------------------------------------
QUALITY_COLUMNS = ("rmse", "mae", "mean_error", "rmse_ratio")


def rmse_ratio(rmse: float | None, holdout_rmse: float | None) -> float | None:
    """The day's RMSE over the holdout RMSE of the model in effect (1.0: as good as on its
    holdout); None when either is missing."""
    if rmse is None or not holdout_rmse:
        return None
    return rmse / holdout_rmse


def drift_row(
    spec: ModelSpec,
    day: str,
    version: str,
    metrics: drift.DayMetrics,
    report,
    threshold: float,
    run_id: str,
    holdout_rmse: float | None = None,
) -> dict:
    """The day's ``dummy_metrics`` row (without ``computed_at``, set when it is written)."""
    return {
        "model_name": spec.name,
        "timestamp": day_timestamp(day),
        MODEL_VERSION: version,
        "prediction_drift": metrics.prediction_drift,
        "num_drifted_columns": metrics.num_drifted_columns,
        "drifted_columns": drifted_text(metrics),
        "share_missing_values": metrics.share_missing_values,
        "n_rows": metrics.n_rows,
        "n_scored": metrics.n_scored,
        "drift_threshold": threshold,
        "report_path": str(report) if report else None,
        "dagster_run_id": run_id,
        "rmse": metrics.rmse,
        "mae": metrics.mae,
        "mean_error": metrics.mean_error,
        "rmse_ratio": rmse_ratio(metrics.rmse, holdout_rmse),
        "holdout_rmse": holdout_rmse,
        "drift_method": metrics.drift_method,
    }


def report_title(
    spec: ModelSpec, day: str, version: str, metrics: drift.DayMetrics, bundle: ModelBundle
) -> str:
    """The heading of a day's Evidently report: which model, day and version, and its figures."""
    parts = [f"{spec.name} · {day} · model v{version} · {metrics.n_rows:,} trips"]
    if metrics.prediction_drift is not None:
        parts.append(f"prediction drift {metrics.prediction_drift:.4f} ({metrics.drift_method})")
    if metrics.rmse is not None:
        ratio = rmse_ratio(metrics.rmse, bundle.info.holdout.rmse)
        parts.append(
            f"RMSE {metrics.rmse:.2f} min" + (f" ({ratio:.2f}x its holdout's)" if ratio is not None else "")
        )
    if metrics.drifted_columns is not None:
        names = metrics.drifted_columns
        parts.append(f"drifted feature columns: {', '.join(names)}" if names else "no drifted feature column")
    return " · ".join(parts)


def drifted_text(metrics: drift.DayMetrics) -> str | None:
    """The drifted feature columns as stored: comma-separated, "" for none, None without trips."""
    names = metrics.drifted_columns
    return None if names is None else ", ".join(names)


def feature_drift_table(metrics: drift.DayMetrics) -> str:
    """Each feature column's drift as a Markdown table (the asset's metadata shows it)."""
    lines = ["| column | drift score | method | threshold | drifted |", "|---|---|---|---|---|"]
    lines += [
        f"| {c.column} | {c.score:.4f} | {c.method} | {c.threshold:g} | {'yes' if c.drifted else 'no'} |"
        for c in metrics.feature_drift
    ]
    return "\n".join(lines)


def drift_metadata(
    row: dict, report, reports: ReportStore | None = None, metrics: drift.DayMetrics | None = None
) -> dict:
    """Per-partition metadata of a ``drift_row``: numbers as numbers, so the asset page plots
    them over days (prediction drift, RMSE, bias, rmse_ratio); the drifted feature columns by
    name, and each feature's drift as a table when ``metrics`` are given; the report as a link
    when ``reports`` has a base URL (REPORTS_URL), else as a path."""
    md = {
        "rows": dg.MetadataValue.int(row["n_rows"]),
        "model_version": dg.MetadataValue.text(row[MODEL_VERSION]),
        "drift_threshold": dg.MetadataValue.float(row["drift_threshold"]),
        "drift_method": dg.MetadataValue.text(row["drift_method"]),
    }
    if row["prediction_drift"] is not None:
        md["prediction_drift"] = dg.MetadataValue.float(row["prediction_drift"])
    else:
        md["prediction_drift"] = dg.MetadataValue.text("no trips" if row["n_rows"] == 0 else "no scored rows")
    if row["num_drifted_columns"] is not None:
        md["num_drifted_columns"] = dg.MetadataValue.int(row["num_drifted_columns"])
        md["drifted_columns"] = dg.MetadataValue.text(row["drifted_columns"] or "none")
        md["share_missing_values"] = dg.MetadataValue.float(row["share_missing_values"])
    for column in (*QUALITY_COLUMNS, "holdout_rmse"):
        if row[column] is not None:
            md[column] = dg.MetadataValue.float(row[column])
    if metrics is not None and metrics.feature_drift:
        md["feature_drift"] = dg.MetadataValue.md(feature_drift_table(metrics))
    if report:
        md["report"] = reports.link(report) if reports is not None else dg.MetadataValue.path(str(report))
    return md


def drift_check(
    key: dg.AssetKey, rule: AlertRule, row: dict, target: CheckTarget | None = None
) -> dg.AssetCheckEvaluation | None:
    """The drift check of one day, recorded on that day's partition: fails (WARN) when the
    day's prediction drift is past the threshold. None for a day without a drift value (no
    trips, nothing scored): nothing was judged, so nothing is recorded (Dagster shows the
    partition's check as skipped)."""
    value = row[rule.metric]
    if value is None:
        return None
    past = "above" if rule.op == ">" else "below"
    problem = (
        f"prediction drift {value:.4f} {past} {threshold_text(rule.threshold)}"
        if rule.qualifies(value, row["n_rows"])
        else None
    )
    metadata = {
        rule.metric: dg.MetadataValue.float(value),
        "threshold": dg.MetadataValue.float(rule.threshold),
        "rows": dg.MetadataValue.int(row["n_rows"]),
    }
    return day_result(key, C.CHECK_DRIFT_THRESHOLD, row, target, problem, metadata)


def quality_check(
    key: dg.AssetKey, spec: ModelSpec, row: dict, target: CheckTarget | None = None
) -> dg.AssetCheckEvaluation | None:
    """The quality check of one day, on that day's partition: fails (WARN) when the day
    crosses one of the spec's quality rules (rmse, mae, mean_error, rmse_ratio; each with its
    min_rows). Day by day: ``for_days`` is the alert sensor's, which sees the days before the
    run too. None for a day without quality metrics (no scored trips): not judged."""
    rules = spec.monitoring.quality_rules()
    if all(row[rule.metric] is None for rule in rules):
        return None
    metadata: dict = {"rows": dg.MetadataValue.int(row["n_rows"])}
    failing = []
    for rule in rules:
        value = row[rule.metric]
        if value is None:
            continue
        metadata[rule.id] = dg.MetadataValue.float(value)
        if rule.qualifies(value, row["n_rows"]):
            failing.append(f"{rule.metric} {value:.3f} {rule.op} {threshold_text(rule.threshold)}")
        elif rule.crosses(value):
            metadata[f"{rule.id} (not counted)"] = f"fewer than min_rows={rule.min_rows} trips"
    metadata["rules"] = "; ".join(r.describe() for r in rules)
    return day_result(key, C.CHECK_MODEL_QUALITY, row, target, "; ".join(failing) or None, metadata)


def day_result(
    key: dg.AssetKey,
    check_name: str,
    row: dict,
    target: CheckTarget | None,
    problem: str | None,
    metadata: dict,
) -> dg.AssetCheckEvaluation:
    """One check's result for the day of ``row``, on its partition and pointing at its
    materialization: failed (WARN) with ``problem`` as the description, else passed."""
    return dg.AssetCheckEvaluation(
        asset_key=key,
        check_name=check_name,
        partition=day_key(row),
        target_materialization_data=target,
        passed=problem is None,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={**metadata, "model_version": dg.MetadataValue.text(str(row[MODEL_VERSION]))},
        description=problem,
    )


def day_key(row: dict) -> str:
    return row["timestamp"].date().isoformat()


def day_targets(instance: dg.DagsterInstance, key: dg.AssetKey, days: list[str]) -> dict[str, CheckTarget]:
    """The latest materialization of each day (the run's own, just written), for its checks."""
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=key, asset_partitions=days), limit=len(days)
    ).records
    out: dict[str, CheckTarget] = {}
    for record in records:  # newest first
        if record.partition_key is not None and record.partition_key not in out:
            out[record.partition_key] = CheckTarget(
                storage_id=record.storage_id, run_id=record.run_id, timestamp=record.timestamp
            )
    return out


def day_checks(
    spec: ModelSpec, key: dg.AssetKey, rows: list[dict], selected, targets: dict[str, CheckTarget]
) -> list:
    """Each judged day's check results, one per (check, day) on the day's partition and
    pointing at that day's materialization, then the checks' outputs (Dagster expects one per
    selected check of the step)."""
    specs = {s.key: s for s in check_specs(spec, key)}
    out: list = []
    for check_key in selected:
        if check_key not in specs:
            continue
        for row in rows:
            target = targets.get(day_key(row))
            if check_key.name == C.CHECK_DRIFT_THRESHOLD:
                result = drift_check(key, spec.monitoring.drift_check_rule(), row, target)
            else:
                result = quality_check(key, spec, row, target)
            if result is not None:
                out.append(result)
    out += [dg.Output(None, output_name=specs[k].get_python_identifier()) for k in selected if k in specs]
    return out


def check_specs(spec: ModelSpec, key: dg.AssetKey) -> list[dg.AssetCheckSpec]:
    """The drift check and, with quality rules, the quality check: partitioned like the asset,
    so each day's result is recorded on its own partition (a breach day is a failed check of
    that day, whatever run judged it)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dg.PreviewWarning)  # partitioned checks are "preview" in 1.13
        specs = [
            dg.AssetCheckSpec(
                C.CHECK_DRIFT_THRESHOLD,
                asset=key,
                partitions_def=daily_partitions,
                description="Warns on a day whose prediction drift is past the threshold "
                f"({spec.monitoring.drift_check_rule().describe()})",
            )
        ]
        if spec.monitoring.quality_rules():
            specs.append(
                dg.AssetCheckSpec(
                    C.CHECK_MODEL_QUALITY,
                    asset=key,
                    partitions_def=daily_partitions,
                    description="Warns on a day whose model quality crosses a quality rule: "
                    + "; ".join(r.describe() for r in spec.monitoring.quality_rules()),
                )
            )
    return specs


def build_drift_asset(spec: ModelSpec) -> dg.AssetsDefinition:
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
            "trips has no metrics (null), never 0."
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
    ):
        threshold = spec.drift_threshold()
        bundles = BundleCache(model_registry, spec)
        rows: list[dict] = []
        days = list(context.partition_keys)

        def judge(day: str) -> pd.DataFrame:  # one day at a time, as the IO manager stores it
            i = len(rows) + 1
            frame = predictions[day]
            version = str(frame[MODEL_VERSION].iloc[0]) if len(frame) else None
            if version is None:  # no trips that day: the version in effect is still recorded
                version = versions_in_effect(spec, metrics_db, [day])[day]
            bundle = bundles.get(version)
            metrics, snapshot = drift.compute(
                frame, bundles.reference(version), bundle.features, spec.drift_method, threshold
            )
            report = (
                reports.save(snapshot, spec.name, day, report_title(spec, day, version, metrics, bundle))
                if snapshot is not None
                else None
            )
            row = drift_row(
                spec, day, version, metrics, report, threshold, context.run.run_id, bundle.info.holdout.rmse
            )
            rows.append(row)
            context.add_asset_metadata(drift_metadata(row, report, reports, metrics), partition_key=day)
            context.log.info(
                "drift %s (%d/%d): %s, rmse %s (x%s) on %d rows, model v%s",
                day,
                i,
                len(days),
                "n/a" if metrics.prediction_drift is None else f"{metrics.prediction_drift:.4f}",
                "n/a" if row["rmse"] is None else f"{row['rmse']:.3f}",
                "n/a" if row["rmse_ratio"] is None else f"{row['rmse_ratio']:.2f}",
                metrics.n_rows,
                version,
            )
            return pd.DataFrame([row])

        # The days' materializations first (stored, and so computed, one day at a time), then
        # each judged day's checks on its partition.
        yield dg.MaterializeResult(value=DayStream.of(days, judge))
        targets = day_targets(context.instance, key, days)
        yield from day_checks(spec, key, rows, context.selected_asset_check_keys, targets)

    return drift_metrics


# --- dummy_metrics ----------------------------------------------------------------------------
def table_row(frame: pd.DataFrame, computed_at, run_id: str) -> dict:
    """A stored drift row as the table takes it: None for missing, ints as ints."""
    row = frame.iloc[0].to_dict()
    row = {k: (None if pd.isna(v) else v) for k, v in row.items()}
    for key in ("n_rows", "n_scored", "num_drifted_columns"):
        if row.get(key) is not None:
            row[key] = int(row[key])
    row["timestamp"] = pd.Timestamp(row["timestamp"]).to_pydatetime()
    row["computed_at"] = computed_at
    row["dagster_run_id"] = run_id
    return row


def table_row_metadata(row: dict) -> dict:
    md = {"model_version": dg.MetadataValue.text(str(row[MODEL_VERSION])), "rows": row["n_rows"]}
    for column in ("prediction_drift", *QUALITY_COLUMNS):
        if row.get(column) is not None:
            md[column] = dg.MetadataValue.float(row[column])
    return md


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
            "the drift alert sensor read it."
        ),
        **common_args(spec),
    )
    def dummy_metrics(
        context: dg.AssetExecutionContext,
        drift_metrics: DayFrames,
        metrics_db: MetricsDB,
    ) -> dg.MaterializeResult:
        computed_at = utcnow()
        rows = [
            table_row(drift_metrics[day], computed_at, context.run.run_id) for day in context.partition_keys
        ]
        written = metrics_db.upsert_metrics(rows)
        for row in rows:
            context.add_asset_metadata(
                table_row_metadata(row), partition_key=row["timestamp"].date().isoformat()
            )
        context.log.info("upserted %d row(s) into dummy_metrics at %s", written, metrics_db.describe())
        return dg.MaterializeResult(metadata={"database": metrics_db.describe(), "rows_upserted": written})

    return dummy_metrics


def build_monitoring_assets(spec: ModelSpec) -> list[dg.AssetsDefinition]:
    return [build_predictions_asset(spec), build_drift_asset(spec), build_dummy_metrics_asset(spec)]
