"""Safe promotion: a new model becomes ``champion`` only if it is no worse than the champion.

Both models are scored on the same holdout rows (the candidate's holdout: the most recent
data). A candidate trained on older data than the champion is never promoted over it. A
promoted model is recorded in the model timeline of the metrics DB, in effect from the first
day that has not been monitored yet (and never before the day after its own data), so days
already monitored keep the model they were monitored with; then the MLflow alias
``champion`` moves to it. The decision and both scores go to MLflow tags and to the caller's
asset metadata. The spec's first model is champion without a contest.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

import pandas as pd

from mlops_assets.metrics_db import MetricsDB
from mlops_assets.training import model as M
from mlops_assets.training.registry import ModelRegistry
from mlops_core.registry import RegisteredVersion
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

    def tags(self) -> dict[str, str]:
        return {
            "decision": "promoted" if self.promoted else "not_promoted",
            "decision_reason": self.reason,
            "candidate_rmse": f"{self.candidate_rmse:.6f}",
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
    timeline = db.timeline(spec.name)
    champion_version = registry.champion(spec.name)

    if not timeline:
        decision = Decision(
            True, version, cand_rmse, None, None, earliest_effective, "first model of this spec"
        )
        _record(spec, decision, candidate, registry, db, window_end, previous=None)
        return decision

    if champion_version is None:  # the registry lost its alias: the timeline knows the champion
        champion_version = timeline[-1]["model_version"]
    if champion_version == version:
        champ_rmse = cand_rmse
        decision = Decision(
            False,
            version,
            cand_rmse,
            version,
            champ_rmse,
            None,
            f"v{version} is already the champion",
        )
        registry.set_champion(spec.name, version)  # heals an alias that a failed run did not move
        return decision

    champion = registry.load(spec.name, champion_version, spec.training.artifact)
    champ_rmse = M.score(champion, holdout_rows).rmse

    def refuse(reason: str) -> Decision:
        decision = Decision(False, version, cand_rmse, champion_version, champ_rmse, None, reason)
        registry.set_tags(spec.name, version, decision.tags())
        return decision

    if date.fromisoformat(champion.info.window_end) > window_end:
        # e.g. an old month's duration_model re-materialized after a retrain: never go back.
        return refuse(
            f"trained on data up to {window_end}, older than champion v{champion_version}'s "
            f"(up to {champion.info.window_end})"
        )
    if not no_worse(cand_rmse, champ_rmse):
        return refuse(
            f"candidate holdout RMSE {cand_rmse:.4f} is worse than champion v{champion_version}'s "
            f"{champ_rmse:.4f} on the same {len(holdout_rows)} holdout rows"
        )

    last = db.last_monitored_day(spec.name)
    effective = max(
        earliest_effective,
        (last + timedelta(days=1)) if last else earliest_effective,
        timeline[-1]["effective_from"],
    )
    reason = (
        f"candidate holdout RMSE {cand_rmse:.4f} <= champion v{champion_version}'s "
        f"{champ_rmse:.4f} on the same {len(holdout_rows)} holdout rows"
    )
    decision = Decision(True, version, cand_rmse, champion_version, champ_rmse, effective, reason)
    _record(spec, decision, candidate, registry, db, window_end, previous=champion_version)
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
