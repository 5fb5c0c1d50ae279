"""A retrain's data: the trips of the ``window_days`` ending at a day, read month by month from
the trip source, and their split into training rows and the holdout (the last
``holdout_days``). A month the source does not have is a gap, not a failure; too little data
is refused (``RetrainRefused``) with a message that names the window and its gaps.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

import pandas as pd

from mlops_assets.data.sources import TripDataError, TripSource, months_between
from mlops_assets.lib import days as D
from mlops_assets.training import model as M
from mlops_core import schema
from mlops_core.features import scorable
from mlops_core.specs import ModelSpec


class RetrainRefused(RuntimeError):
    pass


@dataclass(frozen=True)
class Window:
    """The trips of a retrain window and the days of it that have none."""

    first_day: date
    last_day: date
    rows: pd.DataFrame
    missing_days: list[date]
    notes: list[str]  # why whole months are missing (the trip source's message)

    def describe_missing(self) -> str:
        return D.describe(self.missing_days) or "none"


def window_trips(
    spec: ModelSpec, last_day: date, trip_source: TripSource, first_day: date | None = None
) -> Window:
    """The trips of the ``window_days`` ending at ``last_day`` (from ``first_day`` when given: a
    window that starts at a change), month by month from the trip source: a month the source
    does not have (``TripDataError``) is a gap, not a failure."""
    earliest = last_day - timedelta(days=spec.retraining.window_days - 1)
    first_day = earliest if first_day is None else max(first_day, earliest)
    start, end = pd.Timestamp(first_day), pd.Timestamp(last_day + timedelta(days=1))
    frames, notes = [], []
    for month in months_between(start.to_pydatetime(), end.to_pydatetime()):
        month_start = pd.Timestamp(month + "-01")
        lo, hi = max(start, month_start), min(end, month_start + pd.offsets.MonthBegin(1))
        try:
            frame, _, _ = trip_source.trips_for(spec, lo.to_pydatetime(), hi.to_pydatetime())
        except TripDataError as exc:
            notes.append(f"{month}: {exc}")
            continue
        frames.append(frame)
    rows = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    present = set(schema.day_keys(rows)) if len(rows) else set()
    days = [first_day + timedelta(days=i) for i in range((last_day - first_day).days + 1)]
    missing = [d for d in days if str(d) not in present]
    return Window(first_day, last_day, rows, missing, notes)


def window_rows(spec: ModelSpec, window: Window) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The window's trips split into training rows and the holdout (its last days); refuses
    (``RetrainRefused``) when fewer than ``min_rows`` of them can be used, or when the
    training part or the holdout has none."""
    settings = spec.retraining
    holdout_start = window.last_day - timedelta(days=settings.holdout_days - 1)
    rows = window.rows
    usable = scorable(rows, spec.features) if len(rows) else pd.Series(dtype=bool)
    n_days = (window.last_day - window.first_day).days + 1
    gap = (
        f" ({len(window.missing_days)} of its {n_days} days have no trips: {window.describe_missing()})"
        if window.missing_days
        else ""
    )
    if int(usable.sum()) < settings.min_rows:
        raise RetrainRefused(
            f"{spec.name}: the window {window.first_day} .. {window.last_day} holds {int(usable.sum())} "
            f"usable trips{gap}, fewer than retraining.min_rows={settings.min_rows}; refusing to "
            "train on so little (add the missing trip data, or lower min_rows in the spec)"
        )
    train_rows, holdout_rows = M.split_by_days(rows, pd.Timestamp(holdout_start))
    for part, what in ((train_rows, f"before {holdout_start}"), (holdout_rows, f"from {holdout_start} on")):
        if not scorable(part, spec.features).any():
            raise RetrainRefused(
                f"{spec.name}: the window {window.first_day} .. {window.last_day} has no usable "
                f"trips {what}{gap}; refusing to train or judge a model without them"
            )
    return train_rows, holdout_rows
