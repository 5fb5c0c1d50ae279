"""The monitoring domain's definitions: each spec's daily ``predictions`` → ``drift_metrics`` →
``dummy_metrics`` and its ``monitoring_history`` chart; the daily job over the whole chain
from ``trips`` (the original design's ``metrics_backfill_to_postgres``) and its nightly
schedule; the job and automation sensor that redraw the chart."""

import dagster as dg

from mlops_assets import constants as C
from mlops_assets.keys import champion_review_key, drift_key, dummy_metrics_key, history_key, trips_key
from mlops_assets.monitoring.assets import build_monitoring_assets
from mlops_assets.monitoring.history import build_history_asset
from mlops_core.specs import ModelSpec


def build_definitions(specs: list[ModelSpec]) -> dg.Definitions:
    assets = [a for spec in specs for a in build_monitoring_assets(spec)]
    # The whole daily chain, from the data domain's trips to the training domain's review.
    daily_keys = [
        *(trips_key(s) for s in specs),
        *(k for a in assets for k in a.keys),
        *(champion_review_key(s) for s in specs),
    ]
    # Without the ops domain's freshness checks on drift_metrics and dummy_metrics ("is yesterday monitored by
    # its deadline?"): a run monitors the days it is given, whatever today is.
    freshness = dg.AssetSelection.checks(
        *(
            dg.AssetCheckKey(key(s), C.CHECK_FRESHNESS)
            for s in specs
            for key in (drift_key, dummy_metrics_key)
        )
    )
    monitoring_job = dg.define_asset_job(
        C.MONITORING_JOB,
        selection=dg.AssetSelection.assets(*daily_keys) - freshness,
        description=(
            "Daily monitoring of every spec: trips → predictions → Evidently drift metrics → the "
            "dummy_metrics table (the original design's metrics_backfill_to_postgres DAG) → the "
            "champion review (a new champion against the previous one, in shadow). "
            "A backfill of any range runs as one run, or as runs of at most "
            "MONITORING_BACKFILL_DAYS_PER_RUN days that the run queue executes in parallel."
        ),
    )
    history = dg.AssetSelection.assets(*(history_key(s) for s in specs))
    return dg.Definitions(
        assets=[*assets, *(build_history_asset(s) for s in specs)],
        jobs=[
            monitoring_job,
            dg.define_asset_job(
                C.HISTORY_JOB,
                selection=history,
                description="Draw each spec's drift and model error over every monitored day "
                "(monitoring_history).",
            ),
        ],
        schedules=[
            dg.build_schedule_from_partitioned_job(
                monitoring_job,
                name=C.MONITORING_SCHEDULE,
                hour_of_day=3,
                description="Every night, monitor the day that just ended.",
            )
        ],
        # Runs the history assets' automation condition (after monitoring or a retrain). On by
        # default: Dagster's implicit default_automation_condition_sensor starts stopped.
        sensors=[
            dg.AutomationConditionSensorDefinition(
                C.HISTORY_SENSOR,
                target=history,
                default_status=dg.DefaultSensorStatus.RUNNING,
                description="Redraws each spec's monitoring_history after monitoring or a retrain.",
            )
        ],
    )
