"""The code location's one entrypoint: ``defs``.

One set of assets, checks, sensors and schedules per model spec (``specs.load_specs``), the
shared jobs that keep the original design's names, and the resources, wired once. Tests
build their own ``Definitions`` with ``build_defs`` and override resources.
"""

from __future__ import annotations

import warnings

import dagster as dg

from mlops_assets import constants as C
from mlops_assets.data.assets import build_trips_asset
from mlops_assets.data.sources import TripSource
from mlops_assets.io import PartitionedParquetIOManager
from mlops_assets.specs import ModelSpec, load_specs
from mlops_assets.training.assets import build_model_asset, model_key
from mlops_assets.training.registry import ModelRegistry

# BackfillPolicy is marked beta in Dagster 1.13; single-run backfills are what we rely on.
warnings.filterwarnings("ignore", category=dg.BetaWarning)


def default_resources() -> dict[str, object]:
    return {
        C.TRIP_SOURCE: TripSource(),
        C.PARQUET_IO: PartitionedParquetIOManager(),
        "model_registry": ModelRegistry(),
    }


def build_defs(
    specs: list[ModelSpec], resources: dict[str, object] | None = None
) -> dg.Definitions:
    names = [s.name for s in specs]
    if len(set(names)) != len(names):
        raise ValueError(f"two model specs share a name: {names}")
    assets: list[dg.AssetsDefinition] = []
    for spec in specs:
        assets += [build_trips_asset(spec), build_model_asset(spec)]

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
    return dg.Definitions(
        assets=assets,
        jobs=[train_job],
        schedules=[training_schedule],
        resources={**default_resources(), **(resources or {})},
    )


defs = build_defs(load_specs())
