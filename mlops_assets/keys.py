"""Every asset key of a model spec, in one place: ``[<spec name>, <asset name>]``.

Each stage imports the keys of the assets it depends on from here, never from the stage
that defines them, so imports run one way (see ``mlops_assets_tests/test_layers.py``).
"""

from __future__ import annotations

import dagster as dg

from mlops_assets import constants as C
from mlops_core.specs import ModelSpec


def asset_key(spec: ModelSpec, name: str) -> dg.AssetKey:
    return dg.AssetKey([spec.name, name])


def trips_key(spec: ModelSpec) -> dg.AssetKey:
    return asset_key(spec, C.TRIPS)


def model_key(spec: ModelSpec) -> dg.AssetKey:
    return asset_key(spec, C.DURATION_MODEL)


def predictions_key(spec: ModelSpec) -> dg.AssetKey:
    return asset_key(spec, C.PREDICTIONS)


def drift_key(spec: ModelSpec) -> dg.AssetKey:
    return asset_key(spec, C.DRIFT_METRICS)


def dummy_metrics_key(spec: ModelSpec) -> dg.AssetKey:
    return asset_key(spec, C.DUMMY_METRICS)


def retrained_key(spec: ModelSpec) -> dg.AssetKey:
    return asset_key(spec, C.RETRAINED_MODEL)


def history_key(spec: ModelSpec) -> dg.AssetKey:
    return asset_key(spec, C.MONITORING_HISTORY)


def champion_review_key(spec: ModelSpec) -> dg.AssetKey:
    return asset_key(spec, C.CHAMPION_REVIEW)
