"""Carrying out promotion decisions: who the champion is, and the one way to change it.

``consider`` takes a registered candidate, gathers the evidence (both models' errors on the
candidate's holdout trips, paired; whether the champion breaches a quality rule), asks
``promotion.judge`` and carries the verdict out. ``set_champion`` is the one way the champion
changes, for a promotion and for a rollback alike: the version goes into the model timeline
from the first day not monitored yet (never before ``earliest_effective``:
``timeline.takes_over_from``), the MLflow alias ``champion`` moves to it and its tags record
the decision. Every decision (promoted or not) is a row of ``model_decisions`` and goes to
the caller's asset metadata; a refusal is tagged on the candidate's version only.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import date, timedelta

import pandas as pd

from mlops_assets.alerting.store import AlertStore
from mlops_assets.lib.storage.engine import MetricsDB
from mlops_assets.monitoring.store import DailyMetricsStore
from mlops_assets.training import model as M
from mlops_assets.training import timeline as T
from mlops_assets.training.paired import Moments, compare
from mlops_assets.training.promotion import Contender, Decision, Evidence, beats_mean, judge
from mlops_assets.training.registry_resource import ModelRegistry
from mlops_assets.training.store import DecisionStore, TimelineStore
from mlops_core.daily_metrics import QUALITY_METRICS
from mlops_core.registry import DECISION_TAG, PROMOTED, RegisteredVersion
from mlops_core.specs import ModelSpec


@dataclass(frozen=True)
class About:
    """What a decision is about, for ``model_decisions``: its key (``retrain:<day>``,
    ``train:<month>``), the day it judges, and for a retrain its episode, attempt, rule and
    window."""

    key: str
    day: date
    episode_start: date | None = None
    attempt: int | None = None
    trigger: str | None = None
    window_start: date | None = None
    run_id: str | None = None

    def columns(self) -> dict:
        return {
            "day": self.day,
            "episode_start": self.episode_start,
            "attempt": self.attempt,
            "trigger": self.trigger,
            "window_start": self.window_start,
            "dagster_run_id": self.run_id,
        }


def set_champion(
    spec: ModelSpec,
    decision: Decision,
    *,
    registry: ModelRegistry,
    db: MetricsDB,
    window_end: date | None,
    previous: str | None,
    kind: str | None = None,
) -> None:
    """Make ``decision.candidate_version`` the champion from ``decision.effective_from``
    (``kind``: first, promoted or rolled_back, as the timeline records it)."""
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
        kind=kind,
        rmse_diff=decision.diff(),
    )
    registry.set_champion(spec.name, decision.candidate_version)
    registry.set_tags(spec.name, decision.candidate_version, decision.tags())


def refuse(spec: ModelSpec, decision: Decision, registry: ModelRegistry) -> None:
    """A refusal: recorded on the candidate's MLflow version, unless that version was promoted
    once (its tags are that promotion's record: the same model judged again later, its month
    re-materialized or ``make demo`` run twice); the alias and timeline stay."""
    if registry.version_tags(spec.name, decision.candidate_version).get(DECISION_TAG) != PROMOTED:
        registry.set_tags(spec.name, decision.candidate_version, decision.tags())


def breaching_quality_rule(spec: ModelSpec, db: MetricsDB, version: str, day: date) -> str | None:
    """A quality rule the model ``version`` breached in the ``alerting.resolve_after_days``
    days up to ``day`` (its label), or None."""
    quality = {r.id: r for r in spec.monitoring.rules if r.metric in QUALITY_METRICS}
    if not quality:
        return None
    first = day - timedelta(days=spec.alerting.resolve_after_days - 1)
    for alert in reversed(AlertStore(db).all(spec.name)):
        when = alert["timestamp"].date()
        if alert["rule"] in quality and first <= when <= day and str(alert["model_version"]) == str(version):
            return quality[alert["rule"]].label()
    return None


def consider(
    spec: ModelSpec,
    *,
    candidate: M.ModelBundle,
    registered: RegisteredVersion,
    holdout_rows: pd.DataFrame,
    earliest_effective: date,
    registry: ModelRegistry,
    db: MetricsDB,
    about: About,
    log=None,
) -> Decision:
    """Decide whether ``candidate`` becomes champion, carry it out and record it."""
    decision = _consider(spec, candidate, registered, holdout_rows, earliest_effective, registry, db, about)
    DecisionStore(db).record(
        spec.name,
        about.key,
        kind="promoted" if decision.promoted else "not_promoted",
        version=decision.candidate_version,
        champion_version=decision.champion_version,
        reason=decision.reason,
        rmse_diff=decision.comparison.diff if decision.comparison else None,
        rmse_diff_low=decision.comparison.low if decision.comparison else None,
        rmse_diff_high=decision.comparison.high if decision.comparison else None,
        n_trips=decision.comparison.n if decision.comparison else None,
        effective_from=decision.effective_from,
        **about.columns(),
    )
    if log is not None:
        log.info(
            "%s v%s: %s (%s)",
            spec.name,
            registered.version,
            "promoted" if decision.promoted else "not promoted",
            decision.reason,
        )
    return decision


def _consider(spec, candidate, registered, holdout_rows, earliest_effective, registry, db, about) -> Decision:
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

    champion, comparison, breaching = None, None, None
    if timeline and beats_mean(info):  # a candidate the mean predictor beats needs no contest
        bundle = registry.load(spec.name, champion_version, spec.training.artifact)
        champion = Contender(champion_version, date.fromisoformat(bundle.info.window_end))
        new, old = M.paired_errors(candidate, bundle, holdout_rows)
        comparison = compare(Moments.of(new, old), spec.retraining.confidence)
        breaching = breaching_quality_rule(spec, db, champion_version, about.day)
    evidence = Evidence(
        candidate=Contender(version, date.fromisoformat(info.window_end)),
        candidate_info=info,
        champion=champion,
        comparison=comparison,
        settings=spec.retraining,
        champion_breaching=breaching,
    )
    promoted, reason = judge(evidence)
    effective = None
    if promoted and champion is None:  # the spec's first model
        effective = earliest_effective
    elif promoted:
        last = DailyMetricsStore(db).last_monitored_day(spec.name)
        effective = T.takes_over_from(timeline, earliest_effective, last)
    decision = Decision(
        promoted,
        version,
        info.holdout.rmse,
        champion_version,
        comparison.old_rmse if comparison is not None else None,
        effective,
        reason,
        info.mean_baseline.rmse,
        comparison,
    )
    if promoted:
        window_end = date.fromisoformat(info.window_end)
        previous = champion.version if champion is not None else None
        set_champion(spec, decision, registry=registry, db=db, window_end=window_end, previous=previous)
    else:
        refuse(spec, decision, registry)
    return decision


def rollback(
    spec: ModelSpec,
    *,
    demoted: str,
    restored: str,
    comparison,
    day: date,
    registry: ModelRegistry,
    db: MetricsDB,
    run_id: str | None = None,
) -> Decision:
    """Put ``restored`` (the previous champion) back in place of ``demoted``, from the first day
    not monitored yet, because ``comparison`` (demoted − restored over the shadow days) says
    the new one is worse; recorded in the timeline, on both MLflow versions and as a decision
    to email (``notify_status`` pending)."""
    timeline = TimelineStore(db).entries(spec.name)
    last = DailyMetricsStore(db).last_monitored_day(spec.name)
    effective = T.takes_over_from(timeline, day + timedelta(days=1), last)
    reason = (
        f"rolled back: v{demoted} was worse than v{restored} over the shadow days after its promotion "
        f"({comparison.describe()}; margin {spec.retraining.rollback_margin:g} min)"
    )
    restored_bundle = registry.load(spec.name, restored, spec.training.artifact)
    decision = Decision(
        True,
        restored,
        restored_bundle.info.holdout.rmse,
        demoted,
        None,
        effective,
        reason,
        restored_bundle.info.mean_baseline.rmse,
        # as the timeline reads it: the restored model against the one it replaces
        replace(comparison, new_rmse=comparison.old_rmse, old_rmse=comparison.new_rmse,
                diff=-comparison.diff, low=-comparison.high, high=-comparison.low),
    )  # fmt: skip
    set_champion(
        spec,
        decision,
        registry=registry,
        db=db,
        window_end=date.fromisoformat(restored_bundle.info.window_end),
        previous=demoted,
        kind="rolled_back",
    )
    registry.set_tags(spec.name, demoted, {DECISION_TAG: "rolled_back", "rollback_reason": reason})
    DecisionStore(db).record(
        spec.name,
        f"rollback:v{demoted}",
        kind="rolled_back",
        day=day,
        version=demoted,
        champion_version=restored,
        reason=reason,
        rmse_diff=comparison.diff,
        rmse_diff_low=comparison.low,
        rmse_diff_high=comparison.high,
        n_trips=comparison.n,
        effective_from=effective,
        dagster_run_id=run_id,
        notify_status="pending",
    )
    return decision
