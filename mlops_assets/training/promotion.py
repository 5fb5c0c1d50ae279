"""Safe promotion: a new model becomes ``champion`` only if it beats the mean predictor on
its holdout and is no worse than the champion.

The first test holds for every model, the spec's first included: a model whose holdout RMSE
is not below the RMSE of predicting the training mean is refused whatever the champion
scores (there may be none). With no acceptable model a spec has no champion at all, and
monitoring and serving say why (``RegistryOps.refusal``) instead of using a bad one.

Then both models are scored on the same holdout rows (the candidate's holdout: the most
recent data). A candidate trained on older data than the champion is never promoted over
it. A promoted model is recorded in the model timeline of the metrics DB, in effect from
the first day that has not been monitored yet (and never before the day after its own
data), so days already monitored keep the model they were monitored with; then the MLflow
alias ``champion`` moves to it. The decision, both scores and the mean predictor's go to
MLflow tags and to the caller's asset metadata. The spec's first model that beats the mean
is champion without a contest. A version's tags keep the decision that promoted it: when
the same model is judged again later (its month re-materialized, ``make demo`` run twice)
and refused, the refusal is in that run's metadata only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date, timedelta

import pandas as pd

from mlops_assets.metrics_db import MetricsDB
from mlops_assets.training import model as M
from mlops_assets.training.registry import ModelRegistry
from mlops_core.bundle import ModelInfo
from mlops_core.registry import (
    DECISION_REASON_TAG,
    DECISION_TAG,
    NOT_PROMOTED,
    PROMOTED,
    RegisteredVersion,
)
from mlops_core.specs import ModelSpec


@dataclass(frozen=True)
class Decision:
    promoted: bool
    candidate_version: str
    candidate_rmse: float
    champion_version: str | None
    champion_rmse: float | None
    effective_from: date | None
    reason: str
    mean_baseline_rmse: float | None = None

    def tags(self) -> dict[str, str]:
        return {
            DECISION_TAG: PROMOTED if self.promoted else NOT_PROMOTED,
            DECISION_REASON_TAG: self.reason,
            "candidate_rmse": f"{self.candidate_rmse:.6f}",
            "mean_baseline_rmse": "" if self.mean_baseline_rmse is None else f"{self.mean_baseline_rmse:.6f}",
            "champion_version": self.champion_version or "",
            "champion_rmse": "" if self.champion_rmse is None else f"{self.champion_rmse:.6f}",
            "effective_from": "" if self.effective_from is None else self.effective_from.isoformat(),
        }

    def metadata(self) -> dict:
        out = {
            "decision": "promoted" if self.promoted else "not promoted",
            "decision_reason": self.reason,
            "candidate_version": self.candidate_version,
            "candidate_holdout_rmse": self.candidate_rmse,
        }
        if self.champion_version is not None:
            out["champion_version"] = self.champion_version
        if self.champion_rmse is not None:
            out["champion_holdout_rmse"] = self.champion_rmse
        if self.effective_from is not None:
            out["effective_from"] = self.effective_from.isoformat()
        return out


def no_worse(candidate_rmse: float, champion_rmse: float) -> bool:
    return candidate_rmse <= champion_rmse


def beats_mean(info: ModelInfo) -> bool:
    """The holdout RMSE is finite and below the mean predictor's on the same holdout."""
    return math.isfinite(info.holdout.rmse) and info.holdout.rmse < info.mean_baseline.rmse


def mean_refusal(info: ModelInfo) -> str:
    return (
        f"holdout RMSE {info.holdout.rmse:.4f} does not beat the mean predictor's "
        f"{info.mean_baseline.rmse:.4f} on the same {info.n_holdout} holdout rows"
    )


def promote_if_no_worse(
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
    """Decide, record and (when promoted) move the alias; logs the decision to ``log``."""
    decision = _decide(
        spec,
        candidate=candidate,
        registered=registered,
        holdout_rows=holdout_rows,
        earliest_effective=earliest_effective,
        registry=registry,
        db=db,
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


def _decide(spec, *, candidate, registered, holdout_rows, earliest_effective, registry, db) -> Decision:
    version = registered.version
    window_end = date.fromisoformat(candidate.info.window_end)
    cand_rmse = candidate.info.holdout.rmse
    baseline = candidate.info.mean_baseline.rmse
    timeline = db.timeline(spec.name)
    champion_version = registry.champion(spec.name)
    if champion_version is None and timeline:  # the registry lost its alias: the timeline knows
        champion_version = timeline[-1]["model_version"]

    def decide(promoted, reason, champ_rmse=None, effective=None) -> Decision:
        return Decision(
            promoted, version, cand_rmse, champion_version, champ_rmse, effective, reason, baseline
        )

    if not beats_mean(candidate.info):  # first of all: no champion at all beats a bad one
        return _refuse(spec, registry, decide(False, mean_refusal(candidate.info)))

    if not timeline:
        decision = decide(
            True, "first model of this spec that beats the mean predictor", None, earliest_effective
        )
        _record(spec, decision, candidate, registry, db, window_end, previous=None)
        return decision

    if champion_version == version:
        registry.set_champion(spec.name, version)  # heals an alias that a failed run did not move
        return decide(False, f"v{version} is already the champion", cand_rmse)

    champion = registry.load(spec.name, champion_version, spec.training.artifact)
    champ_rmse = M.score(champion, holdout_rows).rmse

    if date.fromisoformat(champion.info.window_end) > window_end:
        # e.g. an old month's duration_model re-materialized after a retrain: never go back.
        reason = (
            f"trained on data up to {window_end}, older than champion v{champion_version}'s "
            f"(up to {champion.info.window_end})"
        )
        return _refuse(spec, registry, decide(False, reason, champ_rmse))
    if not no_worse(cand_rmse, champ_rmse):
        reason = (
            f"candidate holdout RMSE {cand_rmse:.4f} is worse than champion v{champion_version}'s "
            f"{champ_rmse:.4f} on the same {len(holdout_rows)} holdout rows"
        )
        return _refuse(spec, registry, decide(False, reason, champ_rmse))

    last = db.last_monitored_day(spec.name)
    effective = max(
        earliest_effective,
        (last + timedelta(days=1)) if last else earliest_effective,
        timeline[-1]["effective_from"],
    )
    reason = (
        f"candidate holdout RMSE {cand_rmse:.4f} <= champion v{champion_version}'s "
        f"{champ_rmse:.4f} on the same {len(holdout_rows)} holdout rows (mean predictor: {baseline:.4f})"
    )
    decision = decide(True, reason, champ_rmse, effective)
    _record(spec, decision, candidate, registry, db, window_end, previous=champion_version)
    return decision


def _refuse(spec: ModelSpec, registry: ModelRegistry, decision: Decision) -> Decision:
    """A refusal: recorded on the candidate's MLflow version, unless that version was promoted
    once (its tags are that promotion's record); the alias and timeline stay."""
    if registry.version_tags(spec.name, decision.candidate_version).get(DECISION_TAG) != PROMOTED:
        registry.set_tags(spec.name, decision.candidate_version, decision.tags())
    return decision


def _record(
    spec,
    decision: Decision,
    candidate,
    registry: ModelRegistry,
    db: MetricsDB,
    window_end,
    previous,
):
    # The timeline first: monitoring reads it. If moving the alias then fails, re-running
    # the same materialization finds the same version and moves the alias.
    db.record_in_effect(
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
