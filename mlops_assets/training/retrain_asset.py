"""The retrain asset: a new model on the trailing window ending at a breach day.

Partitioned by the breach day. Reads the trips of the ``window_days`` ending at that day from
the trip source itself (as ``duration_model``'s data comes from it: whether the window's
``trips`` partitions were materialized does not matter), trains the spec's model on the days
that have trips (the last ``holdout_days`` are the holdout) and says which days had none
(a month missing from the data folder, a gap in a file): in the log and the asset's
metadata. It refuses to train when fewer than ``min_rows`` usable trips remain, or when the
training days or the holdout days hold none. Then it registers the candidate in MLflow,
scores the champion on the same holdout and promotes the candidate only if it beats the
mean predictor and is no worse (``training/promotion.py``). After a promotion, the
prediction service is told to reload when ``SERVING_URL`` is set.
"""

from datetime import date, timedelta

import dagster as dg

from mlops_assets import constants as C
from mlops_assets.data.sources import TripSource
from mlops_assets.keys import dummy_metrics_key, retrained_key, trips_key
from mlops_assets.lib.storage.engine import MetricsDB
from mlops_assets.partitions import daily_partitions
from mlops_assets.training import model as M
from mlops_assets.training.assets import model_metadata
from mlops_assets.training.champion import consider
from mlops_assets.training.registry_resource import ModelRegistry
from mlops_assets.training.serving_client import ServingClient
from mlops_assets.training.window import window_rows, window_trips
from mlops_core.specs import ModelSpec

RETRAIN_TAG = "mlops/retrain"
# Set by the alert sensor on the runs it requests: which rule breached, with what value, on
# which day. The retrain copies them into its metadata and its MLflow version's tags.
TRIGGER_RULE_TAG = "mlops/trigger_rule"
TRIGGER_VALUE_TAG = "mlops/trigger_value"
TRIGGER_DAY_TAG = "mlops/trigger_day"
TRIGGER_TAGS = {
    TRIGGER_RULE_TAG: "trigger_rule",
    TRIGGER_VALUE_TAG: "trigger_value",
    TRIGGER_DAY_TAG: "trigger_day",
}


def trigger_of(run_tags: dict[str, str]) -> dict[str, str]:
    """What requested this retrain, from the run's tags: rule, value and day (empty when it was
    launched by hand)."""
    return {name: run_tags[tag] for tag, name in TRIGGER_TAGS.items() if tag in run_tags}


def retrain_run_name(breach_day: date, trigger: dict[str, str]) -> str:
    """The MLflow run's name: what it is, ``retrain 2022-01-31 (prediction_drift > 0.20)``."""
    why = trigger.get("trigger_rule") or "launched by hand"
    return f"retrain {breach_day} ({why})"


def tell_serving(serving: ServingClient, log) -> str:
    """Ask the prediction service to reload; what happened, for the asset's metadata. A
    failure is logged, not raised: the model is promoted, the service can catch up later."""
    try:
        answer = serving.reload()
    except RuntimeError as exc:
        log.warning("prediction service reload failed: %s", exc)
        return f"failed: {exc}"
    return "not configured (no SERVING_URL)" if answer is None else str(answer)


def build_retrain_asset(spec: ModelSpec) -> dg.AssetsDefinition:
    key = retrained_key(spec)
    window = spec.retraining

    @dg.asset(
        key=key,
        group_name=spec.name,
        partitions_def=daily_partitions,
        deps=[
            # Lineage only: the trips are read from the trip source, so days never
            # materialized (or missing from the data) are a gap, not a failure.
            dg.AssetDep(
                trips_key(spec),
                partition_mapping=dg.TimeWindowPartitionMapping(start_offset=-(window.window_days - 1)),
            ),
            dg.AssetDep(dummy_metrics_key(spec)),
        ],
        kinds={C.KIND_SKLEARN, "mlflow"},
        owners=list(spec.owners),
        tags={"stage": "retraining"},
        description=(
            f"A retrained model for a breach day: trained on the {window.window_days} days ending "
            f"that day (the last {window.holdout_days} are the holdout; days without trips are "
            "skipped and listed), registered in MLflow, and promoted to `champion` only if it beats "
            "the mean predictor and its holdout RMSE is no worse than the champion's on the same "
            "rows. Requested by the alert sensor for a rule marked `retrain` (the rule and its "
            "value are in the run's tags and this asset's metadata)."
        ),
    )
    def retrained_model(
        context: dg.AssetExecutionContext,
        trip_source: TripSource,
        model_registry: ModelRegistry,
        metrics_db: MetricsDB,
        serving: ServingClient,
    ) -> dg.MaterializeResult:
        breach_day = date.fromisoformat(context.partition_key)
        trigger = trigger_of(context.run.tags)
        if trigger:
            context.log.info("retrain requested by %s", ", ".join(f"{k}={v}" for k, v in trigger.items()))
        trips = window_trips(spec, breach_day, trip_source)
        if trips.missing_days:
            context.log.warning(
                "%s: %d of the %d days of the window %s .. %s have no trips, training on the rest: %s%s",
                spec.name,
                len(trips.missing_days),
                window.window_days,
                trips.first_day,
                breach_day,
                trips.describe_missing(),
                "".join(f"; {note}" for note in trips.notes),
            )
        train_rows, holdout_rows = window_rows(spec, trips)
        bundle = M.train(spec, train_rows, holdout_rows, min_rows=1)
        registered = model_registry.register(
            bundle,
            artifact=spec.training.artifact,
            params={
                "breach_day": str(breach_day),
                "window_days": window.window_days,
                "holdout_days": window.holdout_days,
            },
            tags={"source": "retrain", "breach_day": str(breach_day), "spec": spec.name, **trigger},
            run_name=retrain_run_name(breach_day, trigger),
        )
        decision = consider(
            spec,
            candidate=bundle,
            registered=registered,
            holdout_rows=holdout_rows,
            earliest_effective=breach_day + timedelta(days=1),
            registry=model_registry,
            db=metrics_db,
            log=context.log,
        )
        metadata = {
            **model_metadata(
                bundle,
                registered,
                model_registry,
                model_registry.bundle_dir(spec.name, registered.version) / spec.training.artifact,
            ),
            **decision.metadata(),
            "breach_day": str(breach_day),
            "missing_days": trips.describe_missing(),
            "n_missing_days": dg.MetadataValue.int(len(trips.missing_days)),
            **trigger,
        }
        if decision.promoted:
            metadata["serving_reload"] = tell_serving(serving, context.log)
        return dg.MaterializeResult(metadata=metadata)

    return retrained_model
