"""The data domain's definitions: each spec's ``trips`` (one day of cleaned trips)."""

import dagster as dg

from mlops_assets.data.assets import build_trips_asset
from mlops_core.specs import ModelSpec


def build_definitions(specs: list[ModelSpec]) -> dg.Definitions:
    return dg.Definitions(assets=[build_trips_asset(spec) for spec in specs])
