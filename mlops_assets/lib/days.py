"""Runs of consecutive days and breach episodes: the helpers behind alert streaks
(``for_days``), the gaps a retrain window or the history chart names, and the episodes that
incidents and the retraining policy are about."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
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


@dataclass(frozen=True)
class Episode:
    """A run of breaches: from its first breach day, while breaches continue, until
    ``resolve_after`` monitored days in a row pass without one (``resolved``: the last of
    them; None while it is open)."""

    start: date
    last_breach: date
    breach_days: int
    resolved: date | None = None

    @property
    def is_open(self) -> bool:
        return self.resolved is None


def episodes(breaches: Iterable[date], monitored: Iterable[date], resolve_after: int) -> list[Episode]:
    """The breach episodes of ``breaches`` (days), judged over the ``monitored`` days: a day
    not monitored neither continues nor ends an episode."""
    breaching = set(breaches)
    out: list[Episode] = []
    current: Episode | None = None
    quiet = 0
    for day in sorted(breaching | set(monitored)):
        if day in breaching:
            if current is None:
                current = Episode(day, day, 1)
            else:
                current = Episode(current.start, day, current.breach_days + 1)
            quiet = 0
        elif current is not None:
            quiet += 1
            if quiet >= resolve_after:
                out.append(Episode(current.start, current.last_breach, current.breach_days, day))
                current, quiet = None, 0
    if current is not None:
        out.append(current)
    return out
