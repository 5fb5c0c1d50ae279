"""The code location's one entrypoint: ``defs``.

The environment is read here, once (``Settings.from_env``); the specs get the default drift
threshold as a value, and the resources their paths, URLs and ``dg.EnvVar`` secrets
(``resources.py``). One set of assets, checks, sensors and schedules per model spec, the
shared jobs that keep the original design's names. Tests call ``build_defs`` with their own
specs and resources.
"""

from __future__ import annotations

import warnings

import dagster as dg

from mlops_assets import constants as C
from mlops_assets.alerting.sensor import build_drift_sensor
from mlops_assets.data.assets import build_trips_asset
from mlops_assets.keys import history_key, model_key, retrained_key
from mlops_assets.monitoring.assets import build_monitoring_assets
from mlops_assets.monitoring.history import build_history_asset
from mlops_assets.partitions import daily_partitions
from mlops_assets.resources import build_resources
from mlops_assets.settings import Settings
from mlops_assets.training.assets import build_model_asset
from mlops_assets.training.retrain import build_retrain_asset
from mlops_core.specs import ModelSpec

# BackfillPolicy is marked beta in Dagster 1.13; single-run backfills are what we rely on.
warnings.filterwarnings("ignore", category=dg.BetaWarning)


def build_defs(specs: list[ModelSpec], resources: dict[str, object]) -> dg.Definitions:
    names = [s.name for s in specs]
    if len(set(names)) != len(names):
        raise ValueError(f"two model specs share a name: {names}")
    assets: list[dg.AssetsDefinition] = []
    for spec in specs:
        assets += [build_trips_asset(spec), build_model_asset(spec), *build_monitoring_assets(spec)]
    daily_keys = [k for a in assets if a.partitions_def == daily_partitions for k in a.keys]
    retrain_assets = [build_retrain_asset(spec) for spec in specs]
    history_assets = [build_history_asset(spec) for spec in specs]

    train_job = dg.define_asset_job(
        C.TRAIN_JOB,
        selection=dg.AssetSelection.assets(*(model_key(s) for s in specs)),
        description=(
            "Train every spec's duration model on a month of trips "
            "(the original design's train_duration_model DAG)."
        ),
    )
    training_schedule = dg.build_schedule_from_partitioned_job(
        train_job,
        name="monthly_training_schedule",
        hour_of_day=6,
        description="On the 1st of each month, train on the month that just ended.",
    )
    monitoring_job = dg.define_asset_job(
        C.MONITORING_JOB,
        selection=dg.AssetSelection.assets(*daily_keys),
        description=(
            "Daily monitoring of every spec: trips → predictions → Evidently drift metrics → the "
            "dummy_metrics table (the original design's metrics_backfill_to_postgres DAG). "
            "A backfill of any range runs as one run, or as runs of at most "
            "MONITORING_BACKFILL_DAYS_PER_RUN days that the run queue executes in parallel."
        ),
    )
    monitoring_schedule = dg.build_schedule_from_partitioned_job(
        monitoring_job,
        name="daily_monitoring_schedule",
        hour_of_day=3,
        description="Every night, monitor the day that just ended.",
    )
    retrain_job = dg.define_asset_job(
        C.RETRAIN_JOB,
        selection=dg.AssetSelection.assets(*(retrained_key(s) for s in specs)),
        description=(
            "Retrain a model on the trailing window ending at a breach day and promote it if it "
            "is no worse than the champion. Drift alert sensors request it, one model at a time."
        ),
    )
    history = dg.AssetSelection.assets(*(history_key(s) for s in specs))
    history_job = dg.define_asset_job(
        C.HISTORY_JOB,
        selection=history,
        description="Draw each spec's drift and model error over every monitored day (monitoring_history).",
    )
    sensors = [build_drift_sensor(spec, retrain_job) for spec in specs]
    # Runs the history assets' automation condition (after monitoring or a retrain). On by
    # default: Dagster's implicit default_automation_condition_sensor starts stopped.
    sensors.append(
        dg.AutomationConditionSensorDefinition(
            C.HISTORY_SENSOR,
            target=history,
            default_status=dg.DefaultSensorStatus.RUNNING,
            description="Redraws each spec's monitoring_history after monitoring or a retrain.",
        )
    )
    return dg.Definitions(
        assets=[*assets, *retrain_assets, *history_assets],
        jobs=[train_job, monitoring_job, retrain_job, history_job],
        schedules=[training_schedule, monitoring_schedule],
        sensors=sensors,
        resources=resources,
        # Steps run one after another in the run's process: the chain trips → predictions →
        # drift → dummy_metrics is sequential, and a process per step would add seconds of
        # imports to each (see BENCHMARKS.md). Runs are still isolated from each other.
        executor=dg.in_process_executor,
    )


def defs_from_settings(settings: Settings) -> dg.Definitions:
    specs = settings.load_specs()
    return build_defs(specs, build_resources(settings))


defs = defs_from_settings(Settings.from_env())
