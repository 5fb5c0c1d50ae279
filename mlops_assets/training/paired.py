"""Comparing two models on the same trips, paired trip by trip: is one better than noise?

For each trip both models scored, the loss differential is ``d = e_new² − e_old²`` (squared
errors in minutes², prediction minus actual). Its mean is the difference of the two models'
mean squared errors on those trips, and its standard error (``sd / √n``) says how much of
that difference the trips' noise alone could make: the Diebold–Mariano comparison of two
forecasters under squared loss. The interval at ``confidence`` is mean ± z·sd/√n (a normal
approximation; n is thousands of trips). It is reported in minutes of RMSE, the figure people
read: ``rmse_new − rmse_old``, its interval the MSE interval scaled by ``1 / (rmse_new +
rmse_old)`` (since ``a − b = (a² − b²) / (a + b)``).

A difference is *real* when the whole interval is on one side of zero. The moments (n, mean,
sd) of d pool exactly across days, so the shadow scoring of a previous champion can be judged
over many days' trips from one row per day (``Moments.pool``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats


@dataclass(frozen=True)
class Moments:
    """n, mean and standard deviation of the per-trip loss differential, and the old model's
    mean squared error on the same trips."""

    n: int
    mean: float  # mean of e_new² − e_old²: MSE_new − MSE_old
    sd: float
    old_mse: float

    @classmethod
    def of(cls, new_errors: np.ndarray, old_errors: np.ndarray) -> Moments:
        new_errors, old_errors = np.asarray(new_errors, float), np.asarray(old_errors, float)
        if new_errors.shape != old_errors.shape:
            raise ValueError(
                f"paired errors must cover the same trips: {new_errors.shape} vs {old_errors.shape}"
            )
        both = np.isfinite(new_errors) & np.isfinite(old_errors)
        d = new_errors[both] ** 2 - old_errors[both] ** 2
        n = len(d)
        if n == 0:
            return cls(0, math.nan, math.nan, math.nan)
        return cls(
            n, float(d.mean()), float(d.std(ddof=1)) if n > 1 else 0.0, float(np.mean(old_errors[both] ** 2))
        )

    @staticmethod
    def pool(parts: list[Moments]) -> Moments:
        """The moments over all trips of ``parts`` (exact: pooled sums of squares)."""
        parts = [p for p in parts if p.n > 0]
        n = sum(p.n for p in parts)
        if n == 0:
            return Moments(0, math.nan, math.nan, math.nan)
        mean = sum(p.n * p.mean for p in parts) / n
        old_mse = sum(p.n * p.old_mse for p in parts) / n
        within = sum((p.n - 1) * p.sd**2 for p in parts)
        between = sum(p.n * (p.mean - mean) ** 2 for p in parts)
        sd = math.sqrt((within + between) / (n - 1)) if n > 1 else 0.0
        return Moments(n, mean, sd, old_mse)


@dataclass(frozen=True)
class Comparison:
    """new − old on the same trips: RMSE difference (minutes) with its interval."""

    new_rmse: float
    old_rmse: float
    diff: float  # new_rmse − old_rmse
    low: float
    high: float
    confidence: float
    n: int

    @property
    def new_is_better(self) -> bool:
        return self.high < 0

    @property
    def new_is_worse(self) -> bool:
        return self.low > 0

    def exceeds(self, margin: float) -> bool:
        """The new model is worse than the old by more than ``margin`` minutes, with confidence."""
        return self.low > margin

    def describe(self) -> str:
        return (
            f"RMSE {self.new_rmse:.4f} vs {self.old_rmse:.4f}: {self.diff:+.4f} min "
            f"[{self.low:+.4f}, {self.high:+.4f}] at {self.confidence:.0%}, paired over {self.n:,} trips"
        )

    def metadata(self, prefix: str = "rmse_diff") -> dict[str, float | int]:
        return {
            prefix: self.diff,
            f"{prefix}_low": self.low,
            f"{prefix}_high": self.high,
            f"{prefix}_confidence": self.confidence,
            f"{prefix}_trips": self.n,
        }


def compare(moments: Moments, confidence: float) -> Comparison:
    """The comparison ``moments`` support at ``confidence``."""
    if moments.n < 2:
        raise ValueError(f"a paired comparison needs at least 2 trips scored by both models, got {moments.n}")
    old_mse = moments.old_mse
    new_mse = max(old_mse + moments.mean, 0.0)
    old_rmse, new_rmse = math.sqrt(old_mse), math.sqrt(new_mse)
    z = float(stats.norm.ppf(0.5 + confidence / 2))
    half = z * moments.sd / math.sqrt(moments.n)
    scale = 1.0 / (new_rmse + old_rmse) if new_rmse + old_rmse > 0 else 0.0
    diff = new_rmse - old_rmse
    return Comparison(
        new_rmse=new_rmse,
        old_rmse=old_rmse,
        diff=diff,
        low=(moments.mean - half) * scale,
        high=(moments.mean + half) * scale,
        confidence=confidence,
        n=moments.n,
    )
