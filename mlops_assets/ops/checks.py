"""Each spec's ``monitored_in_time`` asset check on ``drift_metrics`` and ``dummy_metrics``:
every recent day monitored by its deadline (``ops/freshness.py`` says which days are judged).

``ops_freshness_watch`` (``ops/sensors.py``) evaluates the checks every minute and reports the
result to Dagster when it changes (the asset's Checks tab shows it), and records each late day
and its landing as ops notices. The check can also be executed from the UI; it judges the same
way at the time it runs.

Dagster's own ``build_time_partition_freshness_checks`` judges the latest partition only and
reads the wall clock inside the check: it cannot leave a replay of history alone, nor tell
which day landed, and the clock cannot be set in a test; hence this check.

The checks are kept out of the monitoring job's selection (``monitoring/definitions.py``): a
backfill of old days does not ask "is yesterday monitored?".
"""

from datetime import UTC, date, datetime

import dagster as dg

from mlops_assets import constants as C
from mlops_assets.keys import drift_key, dummy_metrics_key
from mlops_assets.ops.freshness import Freshness, judge
from mlops_assets.ops.policy import OpsPolicy
from mlops_core.specs import PARTITIONS_START, ModelSpec

WATCHED = (drift_key, dummy_metrics_key)


def freshness_check_keys(spec: ModelSpec) -> list[dg.AssetCheckKey]:
    return [dg.AssetCheckKey(key(spec), C.CHECK_FRESHNESS) for key in WATCHED]


def schedule_on(instance: dg.DagsterInstance) -> bool:
    """Whether ``daily_monitoring_schedule`` is turned on in this instance (an instance without
    schedule storage, such as an ephemeral one, runs no schedule)."""
    if instance.schedule_storage is None:
        return False
    return any(
        s.name == C.MONITORING_SCHEDULE and s.status.value == "RUNNING"
        for s in instance.all_instigator_state()
    )


def materialized_days(instance: dg.DagsterInstance, asset_key: dg.AssetKey) -> set[date]:
    return {date.fromisoformat(p) for p in instance.get_materialized_partitions(asset_key)}


def evaluate_freshness(
    instance: dg.DagsterInstance, asset_key: dg.AssetKey, policy: OpsPolicy, now: datetime, on: bool
) -> tuple[Freshness, set[date]]:
    days = materialized_days(instance, asset_key)
    result = judge(
        now,
        materialized=days,
        deadline=policy.deadline(),
        window=policy.window(),
        schedule_on=on,
        first_day=date.fromisoformat(PARTITIONS_START),
    )
    return result, days


def check_evaluation(asset_key: dg.AssetKey, result: Freshness, policy: OpsPolicy) -> dg.AssetCheckEvaluation:
    return dg.AssetCheckEvaluation(
        asset_key=asset_key,
        check_name=C.CHECK_FRESHNESS,
        passed=result.passed,
        severity=dg.AssetCheckSeverity.ERROR,
        description=result.describe(),
        metadata={
            "late_days": dg.MetadataValue.json([d.isoformat() for d in result.late]),
            "judged_from": result.judged[0].isoformat() if result.judged else "",
            "judged_to": result.judged[-1].isoformat() if result.judged else "",
            "live": result.live,
            "deadline_utc": policy.freshness_deadline,
            "window_days": policy.freshness_window_days,
        },
    )


def build_freshness_checks(specs: list[ModelSpec]) -> list[dg.AssetChecksDefinition]:
    description = (
        "Every day of the last FRESHNESS_WINDOW_DAYS monitored by FRESHNESS_DEADLINE (UTC) the day "
        "after; not judged on an instance that only replays history (README, Platform alerts). "
        "ops_freshness_watch evaluates it every minute and emails a late day once."
    )
    specs_by_key = [
        dg.AssetCheckSpec(C.CHECK_FRESHNESS, asset=k(s), description=description)
        for s in specs
        for k in WATCHED
    ]
    if not specs_by_key:
        return []

    @dg.multi_asset_check(
        specs=specs_by_key,
        name="monitored_in_time",
        description="Every day of the last FRESHNESS_WINDOW_DAYS monitored by FRESHNESS_DEADLINE (UTC) "
        "the day after; not judged on an instance that only replays history.",
    )
    def monitored_in_time(context: dg.AssetCheckExecutionContext, ops_policy: OpsPolicy):
        now = datetime.now(UTC)
        on = schedule_on(context.instance)
        for key in context.selected_asset_check_keys:
            result, _ = evaluate_freshness(context.instance, key.asset_key, ops_policy, now, on)
            evaluation = check_evaluation(key.asset_key, result, ops_policy)
            yield dg.AssetCheckResult(
                asset_key=key.asset_key,
                check_name=key.name,
                passed=evaluation.passed,
                severity=evaluation.severity,
                description=evaluation.description,
                metadata=evaluation.metadata,
            )

    return [monitored_in_time]
