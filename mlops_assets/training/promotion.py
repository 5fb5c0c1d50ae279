"""Whether a candidate model may replace the champion: pure rules over the evidence.

1. A model whose holdout RMSE is not below the RMSE of predicting the training mean is
   refused whatever the champion scores (there may be none), the spec's first model
   included. With no acceptable model a spec has no champion at all, and monitoring and
   serving say why (``RegistryOps.refusal``) instead of using a bad one.
2. A model trained on fewer than ``retraining.min_rows_per_column`` rows per input column
   (the one-hot categories and numbers it learns a weight for) is refused: three days of
   trips for some 500 zone columns fit noise.
3. The spec's first model that passes is champion without a contest.
4. A candidate trained on older data than the champion is never promoted over it (an old
   month's duration_model re-materialized after a retrain, say).
5. Candidate and champion are compared on the same holdout trips (the candidate's holdout:
   the most recent data), paired trip by trip (``training/paired.py``): the candidate is
   promoted when it is better with the spec's ``retraining.confidence`` (the whole interval of
   its RMSE minus the champion's below zero), or, while the champion is breaching a quality
   rule, when it is at least no worse (its difference not above zero). A difference inside the
   noise never promotes.

``training/champion.py`` gathers the evidence, asks ``judge`` and carries the verdict out.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date

from mlops_assets.training.paired import Comparison
from mlops_core.bundle import ModelInfo
from mlops_core.registry import DECISION_REASON_TAG, DECISION_TAG, NOT_PROMOTED, PROMOTED
from mlops_core.specs import Retraining


@dataclass(frozen=True)
class Contender:
    """A model as promotion sees it: its version and the last day of its data."""

    version: str
    window_end: date


@dataclass(frozen=True)
class Evidence:
    candidate: Contender
    candidate_info: ModelInfo  # its holdout and mean-predictor scores, rows and columns
    champion: Contender | None  # None: no champion yet (the spec's first model)
    comparison: Comparison | None  # candidate − champion on the same holdout trips
    settings: Retraining
    champion_breaching: str | None = None  # a quality rule the champion breaches now


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
    comparison: Comparison | None = None

    def tags(self) -> dict[str, str]:
        return {
            DECISION_TAG: PROMOTED if self.promoted else NOT_PROMOTED,
            DECISION_REASON_TAG: self.reason,
            "candidate_rmse": f"{self.candidate_rmse:.6f}",
            "mean_baseline_rmse": "" if self.mean_baseline_rmse is None else f"{self.mean_baseline_rmse:.6f}",
            "champion_version": self.champion_version or "",
            "champion_rmse": "" if self.champion_rmse is None else f"{self.champion_rmse:.6f}",
            "effective_from": "" if self.effective_from is None else self.effective_from.isoformat(),
            **(
                {
                    k: f"{v:.6f}" if isinstance(v, float) else str(v)
                    for k, v in self.comparison.metadata().items()
                }
                if self.comparison
                else {}
            ),
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
        if self.comparison is not None:
            out.update(self.comparison.metadata())
        return out

    def diff(self) -> tuple[float, float, float] | None:
        c = self.comparison
        return (c.diff, c.low, c.high) if c else None


def beats_mean(info: ModelInfo) -> bool:
    """The holdout RMSE is finite and below the mean predictor's on the same holdout."""
    return math.isfinite(info.holdout.rmse) and info.holdout.rmse < info.mean_baseline.rmse


def mean_refusal(info: ModelInfo) -> str:
    return (
        f"holdout RMSE {info.holdout.rmse:.4f} does not beat the mean predictor's "
        f"{info.mean_baseline.rmse:.4f} on the same {info.n_holdout} holdout rows"
    )


def rows_per_column(info: ModelInfo) -> float | None:
    return info.n_train / info.n_columns if info.n_columns else None


def judge(evidence: Evidence) -> tuple[bool, str]:
    """(promote?, why), by the rules above."""
    info, settings = evidence.candidate_info, evidence.settings
    if not beats_mean(info):
        return False, mean_refusal(info)
    per_column = rows_per_column(info)
    if per_column is not None and per_column < settings.min_rows_per_column:
        return False, (
            f"trained on {info.n_train:,} rows for {info.n_columns:,} input columns ({per_column:.1f} a "
            f"column; retraining.min_rows_per_column is {settings.min_rows_per_column:g})"
        )
    champion = evidence.champion
    if champion is None:
        return True, "first model of this spec that beats the mean predictor"
    if champion.window_end > evidence.candidate.window_end:
        return False, (
            f"trained on data up to {evidence.candidate.window_end}, older than champion "
            f"v{champion.version}'s (up to {champion.window_end})"
        )
    c = evidence.comparison
    versus = f"candidate vs champion v{champion.version}: {c.describe()}"
    if c.new_is_better:
        return True, f"better than the champion beyond noise ({versus})"
    if evidence.champion_breaching and c.diff <= 0:
        return (
            True,
            f"the champion breaches {evidence.champion_breaching} and the candidate is no worse ({versus})",
        )
    if c.new_is_worse:
        return False, f"worse than the champion ({versus})"
    return False, f"no better than the champion beyond noise ({versus})"
