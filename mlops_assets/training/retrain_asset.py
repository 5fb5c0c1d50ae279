"""The retrain asset: a new model on the window ending at a day (the partition).

The alert sensor's retraining policy (``retrain_policy.py``) requests it once a breach episode
has data after the change, with the episode, the attempt and, where the window starts at the
change, the window's first day in the run's tags. It reads the window's trips from the trip
source itself (as ``duration_model``'s data comes from it: whether the window's ``trips``
partitions were materialized does not matter), trains the spec's model on the days that have
trips (the last ``holdout_days`` are the holdout) and says which days had none (a month
missing from the data folder, a gap in a file): in the log and the asset's metadata.

Too little to train on (fewer than ``min_rows`` usable trips, no training or no holdout days)
is a decision, not a failure: the run succeeds, the refusal and its reason are in the
metadata and in ``model_decisions``. Otherwise the candidate is registered in MLflow and
judged against the champion on the same holdout trips (``promotion.py``: a real, paired win);
after a promotion the prediction service is told to reload when ``SERVING_URL`` is set.
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
from mlops_assets.training.champion import About, consider
from mlops_assets.training.registry_resource import ModelRegistry
from mlops_assets.training.serving_client import ServingClient
from mlops_assets.training.store import DecisionStore
from mlops_assets.training.window import RetrainRefused, window_rows, window_trips
from mlops_core.specs import ModelSpec

RETRAIN_TAG = "mlops/retrain"
# Set by the alert sensor on the runs it requests: which rule breached, with what value, on
# which day. The retrain copies them into its metadata and its MLflow version's tags.
TRIGGER_RULE_TAG = "mlops/trigger_rule"
TRIGGER_VALUE_TAG = "mlops/trigger_value"
TRIGGER_DAY_TAG = "mlops/trigger_day"
# Set by the alert sensor's retraining policy: the breach episode the retrain reacts to (its
# first breach day), the attempt in that episode, and where the window starts (when it starts
# at the change rather than window_days before its last day).
EPISODE_TAG = "mlops/episode_start"
ATTEMPT_TAG = "mlops/attempt"
WINDOW_START_TAG = "mlops/window_start"
TRIGGER_TAGS = {
    TRIGGER_RULE_TAG: "trigger_rule",
    TRIGGER_VALUE_TAG: "trigger_value",
    TRIGGER_DAY_TAG: "trigger_day",
}


def trigger_of(run_tags: dict[str, str]) -> dict[str, str]:
    """What requested this retrain, from the run's tags: rule, value and day (empty when it was
    launched by hand)."""
    return {name: run_tags[tag] for tag, name in TRIGGER_TAGS.items() if tag in run_tags}


def tag_date(tags: dict[str, str], tag: str) -> date | None:
    return date.fromisoformat(tags[tag]) if tags.get(tag) else None


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
            f"A retrained model for a breach episode: trained on up to {window.window_days} days "
            f"ending on the partition's day (the last {window.holdout_days} are the holdout; days "
            "without trips are skipped and listed), registered in MLflow, and promoted to "
            "`champion` only if it beats the mean predictor and the champion on the same holdout "
            "trips beyond noise (paired). Requested by the alert sensor's retraining policy once "
            f"the episode has {spec.retraining.days_after_change} days of data after the change; "
            "too little data is a recorded refusal, not a failed run."
        ),
    )
    def retrained_model(
        context: dg.AssetExecutionContext,
        trip_source: TripSource,
        model_registry: ModelRegistry,
        metrics_db: MetricsDB,
        serving: ServingClient,
    ) -> dg.MaterializeResult:
        last_day = date.fromisoformat(context.partition_key)
        trigger = trigger_of(context.run.tags)
        about = About(
            key=f"retrain:{last_day}",
            day=last_day,
            episode_start=tag_date(context.run.tags, EPISODE_TAG),
            attempt=int(context.run.tags[ATTEMPT_TAG]) if ATTEMPT_TAG in context.run.tags else None,
            trigger=trigger.get("trigger_rule"),
            window_start=tag_date(context.run.tags, WINDOW_START_TAG),
            run_id=context.run.run_id,
        )
        if trigger:
            context.log.info("retrain requested by %s", ", ".join(f"{k}={v}" for k, v in trigger.items()))
        trips = window_trips(spec, last_day, trip_source, first_day=about.window_start)
        if trips.missing_days:
            context.log.warning(
                "%s: %d of the %d days of the window %s .. %s have no trips, training on the rest: %s%s",
                spec.name,
                len(trips.missing_days),
                (last_day - trips.first_day).days + 1,
                trips.first_day,
                last_day,
                trips.describe_missing(),
                "".join(f"; {note}" for note in trips.notes),
            )
        window_md = {
            "window": f"{trips.first_day} .. {last_day}",
            "breach_day": str(last_day),
            "missing_days": trips.describe_missing(),
            "n_missing_days": dg.MetadataValue.int(len(trips.missing_days)),
            **({"episode_start": str(about.episode_start)} if about.episode_start else {}),
            **({"attempt": about.attempt} if about.attempt else {}),
            **trigger,
        }
        try:
            train_rows, holdout_rows = window_rows(spec, trips)
            bundle = M.train(spec, train_rows, holdout_rows, min_rows=1, zones=trip_source.zone_lookup())
        except (RetrainRefused, M.TrainingError) as exc:
            # A decision, not a fault: nothing to train on; recorded, and the run succeeds.
            reason = str(exc)
            context.log.warning("%s: retrain refused: %s", spec.name, reason)
            DecisionStore(metrics_db).record(
                spec.name, about.key, kind="refused", reason=reason, **about.columns()
            )
            return dg.MaterializeResult(
                metadata={"decision": "refused", "decision_reason": reason, **window_md}
            )
        registered = model_registry.register(
            bundle,
            artifact=spec.training.artifact,
            params={
                "breach_day": str(last_day),
                "window_start": str(trips.first_day),
                "window_days": (last_day - trips.first_day).days + 1,
                "holdout_days": window.holdout_days,
            },
            tags={
                "source": "retrain",
                "breach_day": str(last_day),
                "spec": spec.name,
                **trigger,
                **({"episode_start": str(about.episode_start)} if about.episode_start else {}),
            },
            run_name=retrain_run_name(last_day, trigger),
        )
        decision = consider(
            spec,
            candidate=bundle,
            registered=registered,
            holdout_rows=holdout_rows,
            earliest_effective=last_day + timedelta(days=1),
            registry=model_registry,
            db=metrics_db,
            about=about,
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
            **window_md,
        }
        if decision.promoted:
            metadata["serving_reload"] = tell_serving(serving, context.log)
        return dg.MaterializeResult(metadata=metadata)

    return retrained_model
