"""Watching a new champion against the one it replaced: the shadow review of each day.

For ``retraining.shadow_days`` after a promotion, monitoring scores the previous champion on
the same trips as the new one and stores, per day, the paired moments of their squared
errors (``DailyMetrics.shadow_*``). The review pools the days since the promotion (exactly:
``paired.Moments.pool``) and compares the new champion with the previous one over all their
trips. From ``shadow_min_days`` days on, when the new one is worse by more than
``rollback_margin`` minutes of RMSE with the spec's confidence, the verdict is a rollback.
Pure: ``review_asset.py`` reads the rows and carries the verdict out.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date

from mlops_assets.training import timeline as T
from mlops_assets.training.paired import Comparison, Moments, compare
from mlops_core.daily_metrics import DailyMetrics
from mlops_core.specs import ModelSpec


@dataclass(frozen=True)
class Review:
    note: str
    promoted: str | None = None  # the champion under review
    previous: str | None = None  # the one it replaced
    days: int = 0
    comparison: Comparison | None = None  # promoted − previous over the shadow days' trips
    rollback: bool = False


def review(spec: ModelSpec, timeline: list[dict], rows: list[DailyMetrics], day: date) -> Review:
    """The verdict on ``day`` (``rows``: the model's daily rows up to it)."""
    policy = spec.retraining
    previous = T.shadow_on(timeline, day, policy.shadow_days)
    entry = T.in_effect_on(timeline, day)
    if previous is None or entry is None:
        return Review("no promotion under review")
    promoted = str(entry["model_version"])
    if T.current(timeline) is not entry:
        return Review(f"v{promoted} is no longer the newest entry of the timeline", promoted, previous)
    start = entry["effective_from"]
    days = [
        r
        for r in rows
        if start <= r.timestamp.date() <= day
        and str(r.model_version) == promoted
        and r.shadow_version == previous
        and r.shadow_n
        and r.shadow_mse_diff is not None
    ]
    if len(days) < policy.shadow_min_days:
        return Review(
            f"watching v{promoted} against v{previous}: {len(days)} of "
            f"{policy.shadow_min_days} shadow day(s) needed so far",
            promoted,
            previous,
            len(days),
        )
    pooled = Moments.pool(
        [Moments(r.shadow_n, r.shadow_mse_diff, r.shadow_mse_diff_sd or 0.0, r.shadow_rmse**2) for r in days]
    )
    if pooled.n < 2 or math.isnan(pooled.mean):
        return Review(f"watching v{promoted} against v{previous}: too few shared trips", promoted, previous)
    comparison = compare(pooled, policy.confidence)
    rollback = comparison.exceeds(policy.rollback_margin)
    verdict = "worse beyond the margin: roll back" if rollback else "keep"
    return Review(
        f"v{promoted} vs v{previous} over {len(days)} shadow day(s): {comparison.describe()}; {verdict}",
        promoted,
        previous,
        len(days),
        comparison,
        rollback,
    )
