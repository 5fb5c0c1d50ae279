"""Runs of consecutive days: the one helper behind alert streaks (``for_days``), the gaps a
retrain window or the history chart names, and breach episodes."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, datetime, timedelta

ONE_DAY = timedelta(days=1)


def runs(days: Iterable[date | datetime]) -> list[list]:
    """The distinct ``days`` in order, cut into runs of consecutive days."""
    out: list[list] = []
    for day in sorted(set(days)):
        if out and day - out[-1][-1] == ONE_DAY:
            out[-1].append(day)
        else:
            out.append([day])
    return out


def describe(days: Iterable[date | datetime]) -> str:
    """``2021-12-10 .. 2021-12-31 (22 days), 2022-01-05`` ("" for no day)."""

    def text(day) -> str:
        return str(day.date() if isinstance(day, datetime) else day)

    return ", ".join(
        text(run[0]) if len(run) == 1 else f"{text(run[0])} .. {text(run[-1])} ({len(run)} days)"
        for run in runs(days)
    )


def run_ends(days: Iterable[date | datetime], length: int) -> list:
    """Each day that ends ``length`` consecutive days of ``days`` (the 2nd and 3rd of three
    consecutive days for ``length`` 2)."""
    return [run[i] for run in runs(days) for i in range(length - 1, len(run))]


def gaps(days: list[date]) -> list[tuple[int, date, date]]:
    """Where consecutive entries of the sorted ``days`` are not consecutive dates: (index of
    the day after the gap, first skipped date, last skipped date)."""
    return [
        (i, days[i - 1] + ONE_DAY, days[i] - ONE_DAY)
        for i in range(1, len(days))
        if days[i] - days[i - 1] > ONE_DAY
    ]
