"""The alerting domain's definitions: each spec's alert sensor (``drift_alert_sensor__<spec>``),
which emails breaches and requests the training domain's retrain job."""

import dagster as dg

from mlops_assets.alerting.sensor import build_alert_sensor
from mlops_core.specs import ModelSpec


def build_definitions(specs: list[ModelSpec]) -> dg.Definitions:
    return dg.Definitions(sensors=[build_alert_sensor(spec) for spec in specs])
