"""The retrain asset: a new model on the trailing window ending at a breach day.

Partitioned by the breach day. Trains the spec's model on the ``window_days`` ending at that
day (the last ``holdout_days`` are the holdout), refuses to train when the window holds fewer
than ``min_rows`` usable trips, registers the candidate in MLflow, scores the champion on the
same holdout and promotes the candidate only if it is no worse (``training/promotion.py``).
After a promotion, the prediction service is told to reload when ``SERVING_URL`` is set.
"""

from datetime import date, timedelta

import dagster as dg
import pandas as pd

from mlops_assets import constants as C
from mlops_assets.keys import dummy_metrics_key, retrained_key, trips_key
from mlops_assets.metrics_db import MetricsDB
from mlops_assets.partitions import daily_partitions
from mlops_assets.training import model as M
from mlops_assets.training.assets import model_metadata
from mlops_assets.training.promotion import promote_if_no_worse
from mlops_assets.training.registry import ModelRegistry
from mlops_assets.training.serving_client import ServingClient
from mlops_core.features import scorable
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


class RetrainRefused(RuntimeError):
    pass


def window_rows(
    spec: ModelSpec, breach_day: date, trips: dict[str, pd.DataFrame]
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The window's trips split into training rows and the holdout (its last days); refuses
    (``RetrainRefused``) when fewer than ``min_rows`` of them can be used."""
    window = spec.retraining
    first_day = breach_day - timedelta(days=window.window_days - 1)
    holdout_start = breach_day - timedelta(days=window.holdout_days - 1)
    frames = [f for f in trips.values() if len(f)]
    rows = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    usable = int(scorable(rows, spec.features).sum()) if len(rows) else 0
    if usable < window.min_rows:
        raise RetrainRefused(
            f"{spec.name}: the window {first_day} .. {breach_day} holds {usable} usable trips, "
            f"fewer than retraining.min_rows={window.min_rows}; refusing to train on so little "
            "(materialize more trips days, or lower min_rows in the spec)"
        )
    return M.split_by_days(rows, pd.Timestamp(holdout_start))


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
        ins={
            "trips": dg.AssetIn(
                key=trips_key(spec),
                partition_mapping=dg.TimeWindowPartitionMapping(start_offset=-(window.window_days - 1)),
            )
        },
        deps=[dg.AssetDep(dummy_metrics_key(spec))],
        kinds={C.KIND_SKLEARN, "mlflow"},
        owners=list(spec.owners),
        tags={"stage": "retraining"},
        description=(
            f"A retrained model for a breach day: trained on the {window.window_days} days ending "
            f"that day (the last {window.holdout_days} are the holdout), registered in MLflow, "
            "and promoted to `champion` only if its holdout RMSE is no worse than the champion's "
            "on the same rows. Requested by the alert sensor for a rule marked `retrain` (the "
            "rule and its value are in the run's tags and this asset's metadata)."
        ),
    )
    def retrained_model(
        context: dg.AssetExecutionContext,
        trips: dict[str, pd.DataFrame],
        model_registry: ModelRegistry,
        metrics_db: MetricsDB,
        serving: ServingClient,
    ) -> dg.MaterializeResult:
        breach_day = date.fromisoformat(context.partition_key)
        trigger = trigger_of(context.run.tags)
        if trigger:
            context.log.info("retrain requested by %s", ", ".join(f"{k}={v}" for k, v in trigger.items()))
        train_rows, holdout_rows = window_rows(spec, breach_day, trips)
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
        )
        decision = promote_if_no_worse(
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
            **trigger,
        }
        if decision.promoted:
            metadata["serving_reload"] = tell_serving(serving, context.log)
        return dg.MaterializeResult(metadata=metadata)

    return retrained_model
