"""Carrying out promotion decisions: who the champion is, and the one way to change it.

``consider`` takes a registered candidate, gathers the evidence (the champion scored on the
candidate's holdout rows), asks ``promotion.judge`` and carries the verdict out:
``set_champion`` records the version in the model timeline (from the first day not monitored
yet, never before ``earliest_effective``: ``timeline.takes_over_from``), moves the MLflow
alias ``champion`` and tags the version with the decision; a refusal is tagged on the
candidate's version only. The decision, both scores and the mean predictor's go to MLflow
tags and to the caller's asset metadata.
"""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd

from mlops_assets.lib.storage.engine import MetricsDB
from mlops_assets.monitoring.store import DailyMetricsStore
from mlops_assets.training import model as M
from mlops_assets.training import timeline as T
from mlops_assets.training.promotion import Contender, Decision, Evidence, beats_mean, judge
from mlops_assets.training.registry_resource import ModelRegistry
from mlops_assets.training.store import TimelineStore
from mlops_core.registry import DECISION_TAG, PROMOTED, RegisteredVersion
from mlops_core.specs import ModelSpec


def set_champion(
    spec: ModelSpec,
    decision: Decision,
    *,
    registry: ModelRegistry,
    db: MetricsDB,
    window_end: date | None,
    previous: str | None,
) -> None:
    """Make ``decision.candidate_version`` the champion from ``decision.effective_from``."""
    # The timeline first: monitoring reads it. If moving the alias then fails, re-running
    # the same materialization finds the same version and moves the alias.
    TimelineStore(db).record(
        spec.name,
        decision.candidate_version,
        decision.effective_from,
        reason=decision.reason,
        holdout_rmse=decision.candidate_rmse,
        previous_version=previous,
        previous_rmse=decision.champion_rmse,
        window_end=window_end,
    )
    registry.set_champion(spec.name, decision.candidate_version)
    registry.set_tags(spec.name, decision.candidate_version, decision.tags())


def refuse(spec: ModelSpec, decision: Decision, registry: ModelRegistry) -> None:
    """A refusal: recorded on the candidate's MLflow version, unless that version was promoted
    once (its tags are that promotion's record: the same model judged again later, its month
    re-materialized or ``make demo`` run twice); the alias and timeline stay."""
    if registry.version_tags(spec.name, decision.candidate_version).get(DECISION_TAG) != PROMOTED:
        registry.set_tags(spec.name, decision.candidate_version, decision.tags())


def contender(bundle: M.ModelBundle, version: str, rows: pd.DataFrame) -> Contender:
    return Contender(version, date.fromisoformat(bundle.info.window_end), M.errors(bundle, rows))


def consider(
    spec: ModelSpec,
    *,
    candidate: M.ModelBundle,
    registered: RegisteredVersion,
    holdout_rows: pd.DataFrame,
    earliest_effective: date,
    registry: ModelRegistry,
    db: MetricsDB,
    log=None,
) -> Decision:
    """Decide whether ``candidate`` becomes champion, and carry it out; logs it to ``log``."""
    decision = _consider(spec, candidate, registered, holdout_rows, earliest_effective, registry, db)
    if log is not None:
        log.info(
            "%s v%s: %s (%s)",
            spec.name,
            registered.version,
            "promoted" if decision.promoted else "not promoted",
            decision.reason,
        )
    return decision


def _consider(spec, candidate, registered, holdout_rows, earliest_effective, registry, db) -> Decision:
    version = registered.version
    info = candidate.info
    timeline = TimelineStore(db).entries(spec.name)
    champion_version = registry.champion(spec.name)
    if champion_version is None and timeline:  # the registry lost its alias: the timeline knows
        champion_version = T.current(timeline)["model_version"]

    if champion_version == version and timeline:
        registry.set_champion(spec.name, version)  # heals an alias that a failed run did not move
        return Decision(
            False, version, info.holdout.rmse, version, info.holdout.rmse, None,
            f"v{version} is already the champion", info.mean_baseline.rmse,
        )  # fmt: skip

    champion = None
    if timeline and beats_mean(info):  # a candidate the mean predictor beats needs no contest
        bundle = registry.load(spec.name, champion_version, spec.training.artifact)
        champion = contender(bundle, champion_version, holdout_rows)
    evidence = Evidence(
        candidate=Contender(version, date.fromisoformat(info.window_end), np.asarray([])),
        candidate_info=info,
        champion=champion,
        n_holdout_rows=len(holdout_rows),
    )
    promoted, reason = judge(evidence)
    effective = None
    if promoted and champion is None:  # the spec's first model
        effective = earliest_effective
    elif promoted:
        effective = T.takes_over_from(
            timeline, earliest_effective, DailyMetricsStore(db).last_monitored_day(spec.name)
        )
    decision = Decision(
        promoted,
        version,
        info.holdout.rmse,
        champion_version,
        champion.rmse if champion is not None else None,
        effective,
        reason,
        info.mean_baseline.rmse,
    )
    if promoted:
        window_end = date.fromisoformat(info.window_end)
        previous = champion.version if champion is not None else None
        set_champion(spec, decision, registry=registry, db=db, window_end=window_end, previous=previous)
    else:
        refuse(spec, decision, registry)
    return decision
