"""The demo's runner: a persistent Dagster instance, the code location's named jobs run in
process with the demo's tags, and the real alert sensor evaluated as the daemon would."""

from __future__ import annotations

import dataclasses
import os
import statistics
import time
from collections.abc import Sequence
from pathlib import Path

import dagster as dg
import pandas as pd

from mlops_assets import constants as C
from mlops_assets import local_instance
from mlops_assets import resources as R
from mlops_assets.alerting.sensor import sensor_name
from mlops_assets.data.sources import TripDataError
from mlops_assets.definitions import build_defs
from mlops_assets.demo.output import outcome, say
from mlops_assets.settings import Settings
from mlops_assets.training.retrain_asset import (
    EPISODE_TAG,
    TRIGGER_DAY_TAG,
    TRIGGER_RULE_TAG,
    TRIGGER_VALUE_TAG,
)
from mlops_core.specs import ModelSpec

MONITORING = [C.TRIPS, C.PREDICTIONS, C.DRIFT_METRICS, C.DUMMY_METRICS]
# The months of the shared real data, in order (see README: "The demo's story").
DEFAULT_MONTHS = "2021-02,2021-03,2022-01,2022-02,2022-03"
# INFO shows the assets' own progress lines (one per day of a backfill), not Dagster's events.
PROGRESS = {"loggers": {"console": {"config": {"log_level": "INFO"}}}}
# Tags the Runs page filters and groups by: every demo run, its stage of the story, its spec.
DEMO_TAG, STAGE_TAG, SPEC_TAG = "mlops/demo", "mlops/stage", "mlops/spec"
# Dagster's own tags on a run a sensor requested, as its sensor daemon sets them
# (dagster/_core/storage/tags.py: SENSOR_NAME_TAG, RUN_KEY_TAG; dagster/_daemon/sensor.py,
# _create_sensor_run): the sensor page lists the run and a later daemon tick knows the run key.
SENSOR_NAME_TAG, RUN_KEY_TAG = "dagster/sensor_name", "dagster/run_key"


def instance(settings: Settings) -> dg.DagsterInstance:
    home = Path(os.environ.get("DAGSTER_HOME") or settings.home / "dagster_home").resolve()
    note = local_instance.ensure(home)  # the same instance config as `make dev`
    if note:
        say(note)
    os.environ["DAGSTER_HOME"] = str(home)
    return dg.DagsterInstance.get()


def choose_trip_source(settings: Settings, spec: ModelSpec) -> Settings:
    """The settings to run with: synthetic trips instead when the TLC cannot be reached."""
    if settings.trip_source != "auto" or settings.trip_data_dir:
        return settings
    try:
        R.trip_source(settings).files().fetch(spec.taxi_type, spec.training.month)
    except TripDataError as exc:
        say(f"! {exc}")
        say("! Falling back to SYNTHETIC trips (TRIP_SOURCE=synthetic): figures below are not real.")
        return dataclasses.replace(settings, trip_source="synthetic")
    return settings


class Demo:
    def __init__(self, spec: ModelSpec, settings: Settings):
        self.spec = spec
        self.settings = settings
        self.defs = build_defs([spec], R.build_resources(settings))
        self.instance = instance(settings)
        self.step = 0
        self.cursor: str | None = None

    def key(self, name: str) -> dg.AssetKey:
        return dg.AssetKey([self.spec.name, name])

    def run(
        self,
        label: str,
        job: str,
        stage: str,
        names: Sequence[str],
        *,
        partition: str | None = None,
        first: str | None = None,
        last: str | None = None,
        tags: dict[str, str] | None = None,
        allow_failure: bool = False,
    ) -> dg.ExecuteInProcessResult:
        """Run the named ``job`` on this spec's assets ``names`` for one partition or a range,
        in one run (tagged with the demo, the ``stage`` and the spec); print progress. A failed
        run ends the demo (exit 1) with its error, unless ``allow_failure``."""
        self.step += 1
        span = partition or (f"{first}..{last}" if first else "all monitored days")
        say(f"[{self.step}] {label} ({', '.join(names)}; {span}) ...")
        run_tags = {DEMO_TAG: "true", STAGE_TAG: stage, SPEC_TAG: self.spec.name, **(tags or {})}
        if first is not None:
            run_tags["dagster/asset_partition_range_start"] = first
            run_tags["dagster/asset_partition_range_end"] = last
        started = time.perf_counter()
        result = self.defs.resolve_job_def(job).execute_in_process(
            instance=self.instance,
            asset_selection=[self.key(n) for n in names],
            partition_key=partition,
            tags=run_tags,
            run_config=PROGRESS,
            raise_on_error=False,
        )
        if not result.success:
            say(f"    FAILED after {time.perf_counter() - started:.1f} s (run {result.run_id}):")
            self.explain_failure(result)
            if allow_failure:
                return result
            raise SystemExit(1)
        say(f"    done in {time.perf_counter() - started:.1f} s (run {result.run_id[:8]})")
        return result

    @staticmethod
    def explain_failure(result: dg.ExecuteInProcessResult) -> None:
        """The failed steps' root errors, one line each (no traceback)."""
        for event in result.all_events:
            if event.is_step_failure:
                error = event.step_failure_data.error
                while error is not None and error.cause is not None:
                    error = error.cause
                text = error.message.strip() if error else str(event.message)
                for line in text.splitlines():
                    say(f"    {line}")

    @staticmethod
    def metadata(result: dg.ExecuteInProcessResult, key: dg.AssetKey) -> list[tuple[str | None, dict]]:
        out = []
        for event in result.get_asset_materialization_events():
            if event.asset_key == key:
                mat = event.event_specific_data.materialization
                out.append((mat.partition, {k: v.value for k, v in mat.metadata.items()}))
        return out

    def train(self) -> dict:
        month = self.spec.training.month
        start = pd.Timestamp(month + "-01")
        end = start + pd.offsets.MonthEnd(0)
        # trips is daily: of the named jobs, the daily monitoring job holds it.
        trips = self.run(
            f"Load the trips of {month}",
            C.MONITORING_JOB,
            "training-data",
            [C.TRIPS],
            first=str(start.date()),
            last=str(end.date()),
        )
        per_day = self.metadata(trips, self.key(C.TRIPS))
        total = sum(md["rows"] for _, md in per_day)
        say(f"    {total:,} trips over {len(per_day)} days")
        result = self.run(
            f"Train the duration model on {month}",
            C.TRAIN_JOB,
            "training",
            [C.DURATION_MODEL],
            partition=str(start.date()),
            allow_failure=True,
        )
        trained = self.metadata(result, self.key(C.DURATION_MODEL))
        if not trained:  # the run failed before the model was registered: its error said why
            raise SystemExit(1)
        ((_, md),) = trained
        say(
            f"    v{md['model_version']}: holdout RMSE {md['holdout_rmse']:.3f} min "
            f"(mean predictor {md['mean_baseline_rmse']:.3f}); {outcome(md)}"
        )
        if md["decision"] == "promoted":
            return md
        # Not promoted: on a home with an earlier run, because a champion exists already (this
        # model itself, or a later one); otherwise no model of the spec is accepted at all.
        champion = R.model_registry(self.settings).champion(self.spec.name)
        if champion is not None:
            say(f"    champion v{champion} stays; monitoring goes on with the models in effect")
            return md
        say()
        say(f"No model of {self.spec.name} is accepted: v{md['model_version']} was registered in MLflow")
        say("(with the reason in its tags) but not promoted, so nothing can be monitored or served")
        say("(the prediction service's /ready answers 503 with the same reason). Train on a month")
        say("where the model beats predicting the mean, or change the spec's features or filters.")
        raise SystemExit(1)

    def monitor(self, month: str) -> list[dict]:
        start = pd.Timestamp(month + "-01")
        end = start + pd.offsets.MonthEnd(0)
        result = self.run(
            f"Monitor {month} day by day (backfill, one run)",
            C.MONITORING_JOB,
            "monitoring",
            MONITORING,
            first=str(start.date()),
            last=str(end.date()),
        )
        days = self.metadata(result, self.key(C.DRIFT_METRICS))
        drifts = [md["prediction_drift"] for _, md in days if isinstance(md["prediction_drift"], float)]
        ratios = [md["rmse_ratio"] for _, md in days if isinstance(md.get("rmse_ratio"), float)]
        rule = self.spec.monitoring.drift_check_rule()
        past = sum(rule.crosses(d) for d in drifts)
        quality = (
            f"; RMSE ratio median {statistics.median(ratios):.2f}, max {max(ratios):.2f}" if ratios else ""
        )
        say(
            f"    {len(days)} days: drift median {statistics.median(drifts):.3f}, max {max(drifts):.3f}; "
            f"{past} day(s) {'above' if rule.op == '>' else 'below'} {rule.threshold:.2f}{quality}"
        )
        return days

    def sensor_tick(self) -> list[dict]:
        """One evaluation of the real drift alert sensor, then the runs it requested."""
        self.step += 1
        say(f"[{self.step}] Alert sensor judges the new dummy_metrics rows by the spec's rules ...")
        sensor = self.defs.resolve_sensor_def(sensor_name(self.spec))
        with dg.build_sensor_context(
            instance=self.instance, cursor=self.cursor, resources=self.defs.resources
        ) as context:
            result = sensor(context)
        self.cursor = result.cursor
        if result.skip_reason:
            say(f"    {result.skip_reason.skip_message}")
        outcomes = []
        for request in result.run_requests or []:
            trigger = request.tags.get(TRIGGER_RULE_TAG, "?")
            value = request.tags.get(TRIGGER_VALUE_TAG, "?")
            breach_day = request.tags.get(TRIGGER_DAY_TAG, "?")
            episode = request.tags.get(EPISODE_TAG)
            about = f"the episode since {episode}, " if episode else ""
            say(
                f"    requested: retrain on the window ending {request.partition_key}, for {about}"
                f"rule {trigger} ({value} on {breach_day}; run key {request.run_key})"
            )
            run = self.run(
                f"Retrain on the {self.spec.retraining.window_days} days ending {request.partition_key}",
                C.RETRAIN_JOB,
                "retraining",
                [C.RETRAINED_MODEL],
                partition=request.partition_key,
                tags=sensor_run_tags(sensor.name, request),
            )
            ((_, md),) = self.metadata(run, self.key(C.RETRAINED_MODEL))
            say(
                f"    v{md['model_version']}: holdout RMSE {md['candidate_holdout_rmse']:.3f} vs champion "
                f"v{md.get('champion_version')} {md.get('champion_holdout_rmse', float('nan')):.3f} "
                f"on the same rows -> {outcome(md)}"
            )
            outcomes.append(md)
        return outcomes

    def retrains(self) -> list[dict]:
        """The metadata of every retrain in this instance (this run's and an earlier run's on the
        same home), oldest first: a second run on a home tells the story of the first."""
        records = self.instance.fetch_materializations(self.key(C.RETRAINED_MODEL), limit=10_000).records
        return [{k: v.value for k, v in r.asset_materialization.metadata.items()} for r in reversed(records)]

    def draw_history(self) -> None:
        """Materialize monitoring_history last, so ``make dev`` shows the whole story as a chart."""
        result = self.run(
            "Draw drift and model error over the monitored days",
            C.HISTORY_JOB,
            "history",
            [C.MONITORING_HISTORY],
        )
        ((_, md),) = self.metadata(result, self.key(C.MONITORING_HISTORY))
        say(
            f"    {md['days_monitored']} days, {md['promotions']} promotion(s), {md['alerts']} alert(s): "
            f"{md['chart_file']}"
        )


def sensor_run_tags(sensor: str, request: dg.RunRequest) -> dict[str, str]:
    """The tags of the run a sensor's ``request`` becomes: the request's own, then the
    sensor's name and the run key, as Dagster's sensor daemon adds them."""
    return {**request.tags, SENSOR_NAME_TAG: sensor, RUN_KEY_TAG: request.run_key}
