"""``<spec>/champion_review``: each monitored day, the shadow review of a new champion, and the
rollback when it turns out worse than the one it replaced (``shadow.py``).

Daily-partitioned like the monitoring chain and run by the same job, right after
``dummy_metrics``: it reads the rows it needs from the metrics DB. Outside a shadow window it
only records that there is nothing to review. A rollback moves the champion back through
``champion.rollback`` (timeline, MLflow alias and tags, a decision to email), effective from
the first day not monitored yet, and tells the prediction service to reload.
"""

from datetime import date

import dagster as dg

from mlops_assets.keys import champion_review_key, dummy_metrics_key
from mlops_assets.lib.storage.engine import MetricsDB
from mlops_assets.monitoring.store import DailyMetricsStore
from mlops_assets.partitions import daily_backfill_policy, daily_partitions
from mlops_assets.training.champion import rollback
from mlops_assets.training.registry_resource import ModelRegistry
from mlops_assets.training.retrain_asset import tell_serving
from mlops_assets.training.serving_client import ServingClient
from mlops_assets.training.shadow import Review, review
from mlops_assets.training.store import DecisionStore, TimelineStore
from mlops_core.specs import ModelSpec


def review_metadata(verdict: Review) -> dict:
    md = {"review": verdict.note, "shadow_days": dg.MetadataValue.int(verdict.days)}
    if verdict.promoted:
        md["champion_under_review"] = verdict.promoted
        md["previous_champion"] = verdict.previous
    if verdict.comparison is not None:
        md.update(verdict.comparison.metadata())
    md["rolled_back"] = verdict.rollback
    return md


def build_champion_review_asset(spec: ModelSpec) -> dg.AssetsDefinition:
    policy = spec.retraining

    @dg.asset(
        key=champion_review_key(spec),
        deps=[dummy_metrics_key(spec)],
        group_name=spec.name,
        partitions_def=daily_partitions,
        backfill_policy=daily_backfill_policy(spec),
        owners=list(spec.owners),
        kinds={"mlflow"},
        tags={"stage": "retraining"},
        description=(
            f"For {policy.shadow_days} days after a promotion, compares the new champion with the "
            "one it replaced on the same trips (the previous champion is scored in shadow by the "
            f"daily monitoring), pooled over the days so far; from {policy.shadow_min_days} days on, "
            f"rolls the champion back when the new one is worse by more than {policy.rollback_margin:g} "
            f"minutes of RMSE at {policy.confidence:.0%} confidence, and tells the prediction service."
        ),
    )
    def champion_review(
        context: dg.AssetExecutionContext,
        metrics_db: MetricsDB,
        model_registry: ModelRegistry,
        serving: ServingClient,
    ) -> dg.MaterializeResult:
        rows = DailyMetricsStore(metrics_db).rows(spec.name)
        decisions = {d["decision_key"] for d in DecisionStore(metrics_db).all(spec.name)}
        rolled_back = []
        for key in context.partition_keys:
            day = date.fromisoformat(key)
            verdict = review(spec, TimelineStore(metrics_db).entries(spec.name), rows, day)
            if verdict.rollback and f"rollback:v{verdict.promoted}" not in decisions:
                decision = rollback(
                    spec,
                    demoted=verdict.promoted,
                    restored=verdict.previous,
                    comparison=verdict.comparison,
                    day=day,
                    registry=model_registry,
                    db=metrics_db,
                    run_id=context.run.run_id,
                )
                decisions.add(f"rollback:v{verdict.promoted}")
                context.log.warning(
                    "%s: %s, in effect from %s", spec.name, decision.reason, decision.effective_from
                )
                rolled_back.append(verdict.promoted)
            md = review_metadata(verdict)
            context.add_asset_metadata(md, partition_key=key)
            if verdict.promoted:
                context.log.info("%s %s: %s", spec.name, key, verdict.note)
        metadata = {"rolled_back": ", ".join(f"v{v}" for v in rolled_back) or "none"}
        if rolled_back:
            metadata["serving_reload"] = tell_serving(serving, context.log)
        return dg.MaterializeResult(metadata=metadata)

    return champion_review
