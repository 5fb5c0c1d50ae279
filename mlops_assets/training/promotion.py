"""Whether a candidate model may replace the champion: pure rules over the evidence.

The first test holds for every model, the spec's first included: a model whose holdout RMSE
is not below the RMSE of predicting the training mean is refused whatever the champion
scores (there may be none). With no acceptable model a spec has no champion at all, and
monitoring and serving say why (``RegistryOps.refusal``) instead of using a bad one.

Then candidate and champion are compared on the same holdout rows (the candidate's holdout:
the most recent data), from their per-row errors (``Contender.errors``): a candidate trained
on older data than the champion is never promoted over it (an old month's duration_model
re-materialized after a retrain, say), and it must be no worse than the champion. The
spec's first model that beats the mean is champion without a contest.

``training/champion.py`` gathers the evidence, asks ``judge`` and carries the decision out.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date

import numpy as np

from mlops_core.bundle import ModelInfo
from mlops_core.registry import DECISION_REASON_TAG, DECISION_TAG, NOT_PROMOTED, PROMOTED


@dataclass(frozen=True)
class Contender:
    """A model as promotion sees it: its version, the last day of its data, and its error
    (prediction minus actual) on each holdout row it scored."""

    version: str
    window_end: date
    errors: np.ndarray

    @property
    def rmse(self) -> float:
        return float(np.sqrt(np.mean(self.errors**2))) if len(self.errors) else math.nan


@dataclass(frozen=True)
class Evidence:
    candidate: Contender
    candidate_info: ModelInfo  # its holdout and mean-predictor scores
    champion: Contender | None  # scored on the candidate's holdout rows; None: no champion yet
    n_holdout_rows: int


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


def beats_mean(info: ModelInfo) -> bool:
    """The holdout RMSE is finite and below the mean predictor's on the same holdout."""
    return math.isfinite(info.holdout.rmse) and info.holdout.rmse < info.mean_baseline.rmse


def mean_refusal(info: ModelInfo) -> str:
    return (
        f"holdout RMSE {info.holdout.rmse:.4f} does not beat the mean predictor's "
        f"{info.mean_baseline.rmse:.4f} on the same {info.n_holdout} holdout rows"
    )


def judge(evidence: Evidence) -> tuple[bool, str]:
    """(promote?, why), by the rules above."""
    info = evidence.candidate_info
    if not beats_mean(info):
        return False, mean_refusal(info)
    champion = evidence.champion
    if champion is None:
        return True, "first model of this spec that beats the mean predictor"
    cand_rmse, champ_rmse, n = info.holdout.rmse, champion.rmse, evidence.n_holdout_rows
    if champion.window_end > evidence.candidate.window_end:
        return False, (
            f"trained on data up to {evidence.candidate.window_end}, older than champion "
            f"v{champion.version}'s (up to {champion.window_end})"
        )
    if cand_rmse > champ_rmse:
        return False, (
            f"candidate holdout RMSE {cand_rmse:.4f} is worse than champion v{champion.version}'s "
            f"{champ_rmse:.4f} on the same {n} holdout rows"
        )
    return True, (
        f"candidate holdout RMSE {cand_rmse:.4f} <= champion v{champion.version}'s "
        f"{champ_rmse:.4f} on the same {n} holdout rows (mean predictor: {info.mean_baseline.rmse:.4f})"
    )
