"""The training domain's definitions: each spec's monthly ``duration_model``, the
``retrained_model`` the alert sensor requests and the daily ``champion_review`` (shadow
scoring's verdict, and the rollback), the jobs that run them (the original design's
``train_duration_model``, and ``retrain_duration_model``) and the monthly training schedule."""

import dagster as dg

from mlops_assets import constants as C
from mlops_assets.keys import model_key, retrained_key
from mlops_assets.training.assets import build_model_asset
from mlops_assets.training.retrain_asset import build_retrain_asset
from mlops_assets.training.review_asset import build_champion_review_asset
from mlops_core.specs import ModelSpec


def build_definitions(specs: list[ModelSpec]) -> dg.Definitions:
    train_job = dg.define_asset_job(
        C.TRAIN_JOB,
        selection=dg.AssetSelection.assets(*(model_key(s) for s in specs)),
        description=(
            "Train every spec's duration model on a month of trips "
            "(the original design's train_duration_model DAG)."
        ),
    )
    retrain_job = dg.define_asset_job(
        C.RETRAIN_JOB,
        selection=dg.AssetSelection.assets(*(retrained_key(s) for s in specs)),
        description=(
            "Retrain a model on the window of a breach episode and promote it on a real, paired win "
            "over the champion. The alert sensors' retraining policy requests it, one model at a time."
        ),
    )
    return dg.Definitions(
        assets=[
            *(build_model_asset(s) for s in specs),
            *(build_retrain_asset(s) for s in specs),
            *(build_champion_review_asset(s) for s in specs),
        ],
        jobs=[train_job, retrain_job],
        schedules=[
            dg.build_schedule_from_partitioned_job(
                train_job,
                name="monthly_training_schedule",
                hour_of_day=6,
                description="On the 1st of each month, train on the month that just ended.",
            )
        ],
    )
