"""Where the model is wrong: a day's error broken down by segment.

A segment is a value of one dimension derived from a trip's own columns (the spec's
``monitoring.segments``): ``pickup_borough`` and ``dropoff_borough`` from the zone IDs through a
zone lookup (the TLC's ``taxi_zone_lookup.csv``, shipped with this package; an ID the lookup
does not know, or a missing one, is ``Unknown``), ``hour_band`` from the pickup's hour (New York
wall clock, as the TLC records it) and ``distance_band`` from ``trip_distance`` (missing:
``Unknown``), both cut by the spec's bounds.

Per (dimension, segment) of a day: the trips, the scored trips, RMSE, MAE and mean error
(prediction minus actual) over the scored ones, the model's RMSE on the same segment of its
holdout (stored with the model when it is trained, ``holdout_segments``), ``error_share`` (the
segment's share of the day's squared error) and ``excess_share``: its share of the squared
error above what the holdout's per-segment error predicts,
``excess_s = max(0, SSE_s - n_s * holdout_rmse_s**2)``, ``share = excess_s / sum(excess)``.
Every dimension partitions the day's trips, so each dimension's shares sum to 1.

All of it is vectorised: each dimension is one integer code per trip and one ``np.bincount``
per figure (no Python loop over rows or segments' rows).
"""

from __future__ import annotations

import csv
import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np
import pandas as pd

from mlops_core.bundle import PREDICTION
from mlops_core.schema import DURATION, PICKUP
from mlops_core.specs import HOUR_BANDS, Segment

UNKNOWN = "Unknown"
ZONE_COLUMNS = {"pickup_borough": "PULocationID", "dropoff_borough": "DOLocationID"}
DISTANCE = "trip_distance"
TLC_LOOKUP = Path(__file__).resolve().parent / "taxi_zone_lookup.csv"
# The TLC lookup's borough "N/A" is its zone 265, "Outside of NYC".
RENAMED = {"N/A": "Outside NYC"}
# How a dimension reads in a sentence.
DIMENSION_NAMES = {
    "pickup_borough": "pick-up borough",
    "dropoff_borough": "drop-off borough",
    "hour_band": "hour band",
    "distance_band": "distance band",
}


def source_columns(segments: Sequence[Segment]) -> list[str]:
    """The trip columns the dimensions are derived from."""
    out = []
    for segment in segments:
        column = ZONE_COLUMNS.get(segment.dimension) or (
            PICKUP if segment.dimension == "hour_band" else DISTANCE
        )
        if column not in out:
            out.append(column)
    return out


@dataclass(frozen=True)
class ZoneLookup:
    """Zone ID -> borough (or a synthetic city's area, used the same way)."""

    name: str
    boroughs: dict[int, str]

    @classmethod
    def from_csv(cls, path: Path, name: str | None = None) -> ZoneLookup:
        with open(path, newline="") as f:
            rows = {int(r["LocationID"]): RENAMED.get(r["Borough"], r["Borough"]) for r in csv.DictReader(f)}
        return cls(name or path.name, rows)

    @property
    def segments(self) -> list[str]:
        """Its boroughs in order, and ``Unknown`` (IDs it does not know) last."""
        names = sorted(set(self.boroughs.values()) - {UNKNOWN})
        return [*names, UNKNOWN]

    def codes(self, ids: pd.Series) -> np.ndarray:
        """Each zone ID's index in ``segments`` (the last, Unknown, for IDs it does not know)."""
        names = self.segments
        index = {name: i for i, name in enumerate(names)}
        size = max(self.boroughs) + 1
        table = np.full(size, len(names) - 1, dtype=np.int64)
        for zone, borough in self.boroughs.items():
            if zone >= 0:
                table[zone] = index[borough]
        values = ids.to_numpy(dtype="float64", na_value=np.nan) if isinstance(ids, pd.Series) else ids
        values = np.asarray(values, dtype="float64")
        known = np.isfinite(values) & (values >= 0) & (values < size) & (values == np.floor(values))
        out = np.full(len(values), len(names) - 1, dtype=np.int64)
        out[known] = table[values[known].astype(np.int64)]
        return out


@cache
def tlc_zones() -> ZoneLookup:
    """The TLC's own zone lookup (265 zones), shipped with the package."""
    return ZoneLookup.from_csv(TLC_LOOKUP, name="tlc")


def band_labels(segment: Segment) -> list[str]:
    """The bands of ``hour_band`` or ``distance_band`` in order (distance: and Unknown)."""
    bounds = segment.bounds
    if segment.dimension == "hour_band":
        edges = [0, *bounds, 24]
        return [f"{name} ({edges[i]:g}-{edges[i + 1]:g}h)" for i, name in enumerate(HOUR_BANDS)]
    labels = [f"< {bounds[0]:g} mi"]
    labels += [f"{lo:g}-{hi:g} mi" for lo, hi in itertools.pairwise(bounds)]
    return [*labels, f">= {bounds[-1]:g} mi", UNKNOWN]


def codes_of(frame: pd.DataFrame, segment: Segment, zones: ZoneLookup) -> tuple[np.ndarray, list[str]]:
    """Each trip's segment of ``segment``'s dimension (an index into the returned labels)."""
    if segment.dimension in ZONE_COLUMNS:
        return zones.codes(frame[ZONE_COLUMNS[segment.dimension]]), zones.segments
    labels = band_labels(segment)
    bounds = np.asarray(segment.bounds, dtype="float64")
    if segment.dimension == "hour_band":
        hours = frame[PICKUP].dt.hour.to_numpy(dtype="float64")
        return np.searchsorted(bounds, hours, side="right").astype(np.int64), labels
    miles = frame[DISTANCE].to_numpy(dtype="float64", na_value=np.nan)
    codes = np.searchsorted(bounds, miles, side="right").astype(np.int64)
    codes[~np.isfinite(miles)] = len(labels) - 1
    return codes, labels


@dataclass(frozen=True)
class SegmentFigures:
    """One (dimension, segment) of a day: the row of table ``segment_metrics`` without which
    model and day."""

    dimension: str
    segment: str
    n_rows: int
    n_scored: int
    rmse: float | None
    mae: float | None
    mean_error: float | None
    holdout_rmse: float | None
    error_share: float | None
    excess_share: float | None

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def _sums(codes: np.ndarray, k: int, error: np.ndarray, scored: np.ndarray):
    c = codes[scored]
    e = error[scored]
    return (
        np.bincount(codes, minlength=k),
        np.bincount(c, minlength=k),
        np.bincount(c, weights=e * e, minlength=k),
        np.bincount(c, weights=np.abs(e), minlength=k),
        np.bincount(c, weights=e, minlength=k),
    )


def holdout_segments(
    frame: pd.DataFrame, predictions: np.ndarray, segments: Sequence[Segment], zones: ZoneLookup
) -> dict:
    """The model's figures per segment of its holdout, as stored with it (``ModelInfo``):
    ``{"zones": lookup name, "dimensions": [{dimension, bounds, segments: {label: [n, rmse]}}]}``."""
    error = np.asarray(predictions, dtype="float64") - frame[DURATION].to_numpy(dtype="float64")
    scored = np.isfinite(error)
    out = []
    for segment in segments:
        codes, labels = codes_of(frame, segment, zones)
        _, n, sse, _, _ = _sums(codes, len(labels), error, scored)
        figures = {label: [int(n[i]), math.sqrt(sse[i] / n[i])] for i, label in enumerate(labels) if n[i] > 0}
        out.append({**segment.key(), "segments": figures})
    return {"zones": zones.name, "dimensions": out}


def holdout_rmse_of(holdout: dict | None, segment: Segment, zones: ZoneLookup) -> dict[str, float]:
    """A model's holdout RMSE per segment of ``segment``'s dimension; empty for a model trained
    before they were stored, or with other bounds or another zone lookup."""
    if not holdout or holdout.get("zones") != zones.name:
        return {}
    for stored in holdout.get("dimensions", ()):
        if stored["dimension"] == segment.dimension and stored["bounds"] == segment.key()["bounds"]:
            return {label: float(v[1]) for label, v in stored["segments"].items()}
    return {}


def day_segments(
    frame: pd.DataFrame,
    segments: Sequence[Segment],
    zones: ZoneLookup,
    holdout: dict | None = None,
) -> list[SegmentFigures]:
    """The day's figures per (dimension, segment), every segment of every dimension (a segment
    without trips has ``n_rows`` 0 and no figures). ``frame`` holds the day's scored trips: the
    dimensions' source columns, ``duration`` and ``prediction`` (NaN: not scored)."""
    if not len(frame):
        return []
    error = frame[PREDICTION].to_numpy(dtype="float64") - frame[DURATION].to_numpy(dtype="float64")
    scored = np.isfinite(error)
    out: list[SegmentFigures] = []
    for segment in segments:
        codes, labels = codes_of(frame, segment, zones)
        k = len(labels)
        rows, n, sse, sae, se = _sums(codes, k, error, scored)
        reference = holdout_rmse_of(holdout, segment, zones)
        h = np.array([reference.get(label, np.nan) for label in labels])
        excess = np.where(n > 0, np.maximum(0.0, sse - n * h * h), 0.0)  # NaN: holdout unknown
        total_sse, total_excess = sse.sum(), np.nansum(excess)
        with np.errstate(invalid="ignore", divide="ignore"):
            rmse, mae, mean = np.sqrt(sse / n), sae / n, se / n
        for i, label in enumerate(labels):
            has = n[i] > 0
            out.append(
                SegmentFigures(
                    dimension=segment.dimension,
                    segment=label,
                    n_rows=int(rows[i]),
                    n_scored=int(n[i]),
                    rmse=float(rmse[i]) if has else None,
                    mae=float(mae[i]) if has else None,
                    mean_error=float(mean[i]) if has else None,
                    holdout_rmse=None if math.isnan(h[i]) else float(h[i]),
                    error_share=float(sse[i] / total_sse) if total_sse > 0 else None,
                    excess_share=(
                        None
                        if math.isnan(excess[i])
                        else float(excess[i] / total_excess)
                        if total_excess > 0
                        else 0.0
                    ),
                )
            )
    return out


def describe_segment(dimension: str, segment: str) -> str:
    """``drop-off borough Queens``."""
    return f"{DIMENSION_NAMES.get(dimension, dimension)} {segment}"
