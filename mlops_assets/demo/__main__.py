"""``make demo``: the platform's main job on embedded defaults, with progress and a summary.

Runs on a persistent Dagster instance in ``DAGSTER_HOME`` (default ``MLOPS_HOME/dagster_home``),
so every run it makes shows up afterwards in ``make dev``: each is a run of one of the code
location's named jobs (``train_duration_model``, ``metrics_backfill_to_postgres``, the retrain
job), tagged ``mlops/demo``, ``mlops/stage`` and ``mlops/spec``; the retrain the alert sensor
requests also carries the sensor's name and run key, as a daemon-launched run does. Trip data comes from
``TRIP_DATA_DIR`` when set, else from the TLC; when the TLC cannot be reached it says so and
falls back to the synthetic generator (``TRIP_SOURCE=synthetic``), clearly labelled.
"""

from __future__ import annotations

import logging
import os
import sys
import warnings

from mlops_assets import resources as R
from mlops_assets.demo.output import say, set_label
from mlops_assets.demo.runner import DEFAULT_MONTHS, Demo, choose_trip_source
from mlops_assets.demo.story import print_story
from mlops_assets.monitoring.store import DailyMetricsStore
from mlops_assets.settings import Settings


def main() -> int:
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore")
    settings = Settings.from_env()
    specs = settings.load_specs()
    spec = next((s for s in specs if s.name == "green_taxi_duration"), specs[0])
    months = [m.strip() for m in os.environ.get("DEMO_MONTHS", DEFAULT_MONTHS).split(",") if m.strip()]
    settings = choose_trip_source(settings, spec)
    if settings.trip_source == "synthetic":
        set_label("[synthetic] ")
    demo = Demo(spec, settings)
    db = R.metrics_db(settings)
    say(f"mlops_assets demo: model spec '{spec.name}' ({spec.source_file})")
    say(f"MLOPS_HOME     {settings.home}")
    say(f"trip data      {R.trip_source(settings).describe()}")
    say(f"metrics DB     {db.describe()}")
    say(f"MLflow         {R.model_registry(settings).describe()}")
    say(f"alert email    {demo.defs.resources['mailer'].describe()}")
    say(f"drift method   {spec.drift_method} (Evidently ValueDrift on the predictions)")
    for rule in spec.monitoring.rules:
        say(f"alert rule     {rule.describe()}{' -> retrain' if rule.retrain else ''}")
    say(f"months         train {spec.training.month}; monitor {', '.join(months)}")
    if DailyMetricsStore(db).rows(spec.name):
        say()
        say("! MLOPS_HOME already holds an earlier run: monitoring reproduces the same rows, breaches")
        say("  already alerted are not emailed again and models are not promoted twice. For a fresh")
        say(f"  story, delete it first (rm -rf {settings.home}; the TLC downloads are in its cache/).")
    say()
    demo.train()
    for month in months:
        demo.monitor(month)
        demo.sensor_tick()
    demo.draw_history()
    say()
    print_story(spec, settings, demo.retrains())
    return 0


if __name__ == "__main__":
    sys.exit(main())
