"""The ``duration_model`` asset: a model trained on one month of trips, and its check."""

import dagster as dg
import pandas as pd

from mlops_assets import constants as C
from mlops_assets.data.sources import TripSource
from mlops_assets.keys import model_key, trips_key
from mlops_assets.lib.io import DayFrames
from mlops_assets.lib.storage.engine import MetricsDB
from mlops_assets.partitions import monthly_partitions
from mlops_assets.training import model as M
from mlops_assets.training.champion import About, consider
from mlops_assets.training.promotion import beats_mean, mean_refusal
from mlops_assets.training.registry_resource import ModelRegistry
from mlops_core.specs import ModelSpec


def model_metadata(bundle: M.ModelBundle, registered, registry: ModelRegistry, artifact_path) -> dict:
    info = bundle.info
    metadata = {
        "model_version": dg.MetadataValue.text(registered.version),
        "holdout_rmse": dg.MetadataValue.float(info.holdout.rmse),
        "holdout_mae": dg.MetadataValue.float(info.holdout.mae),
        "mean_baseline_rmse": dg.MetadataValue.float(info.mean_baseline.rmse),
        "n_train": dg.MetadataValue.int(info.n_train),
        "n_holdout": dg.MetadataValue.int(info.n_holdout),
        "n_reference": dg.MetadataValue.int(info.n_reference or info.n_holdout),
        "training_window": (f"{info.window_start} .. {info.window_end} (holdout from {info.holdout_start})"),
        "artifact": dg.MetadataValue.path(str(artifact_path)),
        "mlflow_run_id": registered.run_id,
        "fingerprint": info.fingerprint,
        "newly_registered": registered.created,
    }
    url = registry.run_url(registered.run_id, info.model_name)
    if url:
        metadata["mlflow_run"] = dg.MetadataValue.url(url)
    version_url = registry.version_url(info.model_name, registered.version)
    if version_url:
        metadata["mlflow_model_version"] = dg.MetadataValue.url(version_url)
    return metadata


def rmse_check(spec: ModelSpec, info: M.ModelInfo, key: dg.AssetKey) -> dg.AssetCheckResult:
    """Blocking (severity ERROR): a failure fails the run after the materialization and its
    metadata are recorded; promotion has already refused the model (``promotion.beats_mean``)."""
    passed = beats_mean(info)
    return dg.AssetCheckResult(
        asset_key=key,
        check_name=C.CHECK_MODEL_RMSE,
        passed=passed,
        severity=dg.AssetCheckSeverity.ERROR,
        metadata={
            "holdout_rmse": float(info.holdout.rmse),
            "mean_baseline_rmse": float(info.mean_baseline.rmse),
        },
        description=None if passed else f"not promoted: {mean_refusal(info)}",
    )


def build_model_asset(spec: ModelSpec) -> dg.AssetsDefinition:
    key = model_key(spec)

    @dg.asset(
        key=key,
        group_name=spec.name,
        partitions_def=monthly_partitions,
        ins={"trips": dg.AssetIn(key=trips_key(spec))},
        kinds={C.KIND_SKLEARN, "mlflow"},
        owners=list(spec.owners),
        tags={"stage": "training"},
        description=(
            f"A {spec.training.algorithm} of trip duration on {', '.join(spec.feature_columns)}, "
            f"trained on the first {spec.training.train_fraction:.0%} (by pickup time) of a month"
            "'s trips; the rest is the holdout, kept as monitoring's reference data. Registered in "
            f"MLflow as `{spec.name}`. The spec's first model becomes `champion`; a later one only "
            "if it beats the champion on the same holdout trips beyond noise (paired)."
        ),
        check_specs=[
            dg.AssetCheckSpec(
                C.CHECK_MODEL_RMSE,
                asset=key,
                description="Holdout RMSE is finite and beats the mean predictor (blocking)",
                blocking=True,
            )
        ],
    )
    def duration_model(
        context: dg.AssetExecutionContext,
        trips: DayFrames,
        model_registry: ModelRegistry,
        metrics_db: MetricsDB,
        trip_source: TripSource,
    ) -> dg.MaterializeResult:
        frames = [f for f in trips.values() if len(f)]
        if not frames:
            raise M.TrainingError(f"{spec.name}: no trips in {context.partition_key[:7]}")
        month = pd.concat(frames, ignore_index=True)
        bundle, holdout_rows = M.train_on_month(spec, month, zones=trip_source.zone_lookup())
        registered = model_registry.register(
            bundle,
            artifact=spec.training.artifact,
            params={
                "training_month": context.partition_key[:7],
                "train_fraction": spec.training.train_fraction,
            },
            tags={
                "source": "monthly_training",
                "training_month": context.partition_key[:7],
                "spec": spec.name,
            },
            run_name=f"monthly training {context.partition_key[:7]}",
        )
        artifact_path = model_registry.bundle_dir(spec.name, registered.version) / spec.training.artifact
        # Champion if it beats the mean predictor and is the spec's first model or better than
        # the champion on this month's holdout (promotion.py); in effect from the month after
        # at the earliest.
        decision = consider(
            spec,
            candidate=bundle,
            registered=registered,
            holdout_rows=holdout_rows,
            earliest_effective=(pd.Timestamp(context.partition_key) + pd.offsets.MonthBegin(1)).date(),
            registry=model_registry,
            db=metrics_db,
            about=About(
                key=f"train:{context.partition_key[:7]}",
                day=(pd.Timestamp(context.partition_key) + pd.offsets.MonthEnd(0)).date(),
                run_id=context.run.run_id,
            ),
            log=context.log,
        )
        context.log.info(
            "%s v%s: holdout RMSE %.3f (mean predictor %.3f) on %d rows",
            spec.name,
            registered.version,
            bundle.info.holdout.rmse,
            bundle.info.mean_baseline.rmse,
            bundle.info.n_holdout,
        )
        return dg.MaterializeResult(
            metadata={
                **model_metadata(bundle, registered, model_registry, artifact_path),
                **decision.metadata(),
            },
            check_results=[rmse_check(spec, bundle.info, key)],
        )

    return duration_model
