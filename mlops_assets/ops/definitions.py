"""The ops domain's definitions: the platform watching itself. Each spec's ``monitored_in_time``
checks on ``drift_metrics`` and ``dummy_metrics``, and three sensors: ``ops_run_watch`` (failed
runs), ``ops_freshness_watch`` (days not monitored by their deadline) and ``ops_watch``
(retrains that never started; it emails what all three found). See ``ops/sensors.py``."""

import dagster as dg

from mlops_assets.ops.checks import build_freshness_checks
from mlops_assets.ops.sensors import build_freshness_sensor, build_run_failure_sensor, build_watch_sensor
from mlops_core.specs import ModelSpec


def build_definitions(specs: list[ModelSpec]) -> dg.Definitions:
    return dg.Definitions(
        asset_checks=build_freshness_checks(specs),
        sensors=[build_run_failure_sensor(), build_freshness_sensor(specs), build_watch_sensor(specs)],
    )
