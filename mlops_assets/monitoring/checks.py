"""The daily monitoring checks: each day's result recorded on its own partition of
``drift_metrics``, pointing at that day's materialization.

* ``prediction_drift_below_threshold`` (``CHECK_PREDICTION_DRIFT``): fails (WARN) on a day
  whose prediction drift is past the drift rule's threshold, in the rule's direction (above
  for a distance, below for a p-value);
* ``model_quality_within_rules``: fails (WARN) on a day that crosses one of the spec's quality
  rules (each with its ``min_rows``).
"""

import warnings

import dagster as dg

# Not exported by dagster, but a documented argument of dg.AssetCheckEvaluation: the check
# result of a day points at that day's materialization, so the UI counts it as current
# (the check's Partitions view shows passed/failed days; without it every day reads missing).
from dagster._core.definitions.asset_checks.asset_check_evaluation import (
    AssetCheckEvaluationTargetMaterializationData as CheckTarget,
)

from mlops_assets import constants as C
from mlops_assets.partitions import daily_partitions
from mlops_core.daily_metrics import DailyMetrics
from mlops_core.specs import AlertRule, ModelSpec, threshold_text


def drift_check(
    key: dg.AssetKey, rule: AlertRule, row: DailyMetrics, target: CheckTarget | None = None
) -> dg.AssetCheckEvaluation | None:
    """The drift check of one day, recorded on that day's partition: fails (WARN) when the
    day's prediction drift is past the threshold. None for a day without a drift value (no
    trips, nothing scored): nothing was judged, so nothing is recorded (Dagster shows the
    partition's check as skipped)."""
    value = getattr(row, rule.metric)
    if value is None:
        return None
    past = "above" if rule.op == ">" else "below"
    problem = (
        f"prediction drift {value:.4f} {past} {threshold_text(rule.threshold)}"
        if rule.qualifies(value, row.n_rows)
        else None
    )
    metadata = {
        rule.metric: dg.MetadataValue.float(value),
        "threshold": dg.MetadataValue.float(rule.threshold),
        "rows": dg.MetadataValue.int(row.n_rows),
    }
    return day_result(key, C.CHECK_PREDICTION_DRIFT, row, target, problem, metadata)


def quality_check(
    key: dg.AssetKey, spec: ModelSpec, row: DailyMetrics, target: CheckTarget | None = None
) -> dg.AssetCheckEvaluation | None:
    """The quality check of one day, on that day's partition: fails (WARN) when the day
    crosses one of the spec's quality rules (rmse, mae, mean_error, rmse_ratio; each with its
    min_rows). Day by day: ``for_days`` is the alert sensor's, which sees the days before the
    run too. None for a day without quality metrics (no scored trips): not judged."""
    rules = spec.monitoring.quality_rules()
    if all(getattr(row, rule.metric) is None for rule in rules):
        return None
    metadata: dict = {"rows": dg.MetadataValue.int(row.n_rows)}
    failing = []
    for rule in rules:
        value = getattr(row, rule.metric)
        if value is None:
            continue
        metadata[rule.id] = dg.MetadataValue.float(value)
        if rule.qualifies(value, row.n_rows):
            failing.append(f"{rule.metric} {value:.3f} {rule.op} {threshold_text(rule.threshold)}")
        elif rule.crosses(value):
            metadata[f"{rule.id} (not counted)"] = f"fewer than min_rows={rule.min_rows} trips"
    metadata["rules"] = "; ".join(r.describe() for r in rules)
    return day_result(key, C.CHECK_MODEL_QUALITY, row, target, "; ".join(failing) or None, metadata)


def day_result(
    key: dg.AssetKey,
    check_name: str,
    row: DailyMetrics,
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
        metadata={**metadata, "model_version": dg.MetadataValue.text(str(row.model_version))},
        description=problem,
    )


def day_key(row: DailyMetrics) -> str:
    return row.timestamp.date().isoformat()


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
    spec: ModelSpec, key: dg.AssetKey, rows: list[DailyMetrics], selected, targets: dict[str, CheckTarget]
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
            if check_key.name == C.CHECK_PREDICTION_DRIFT:
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
                C.CHECK_PREDICTION_DRIFT,
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
