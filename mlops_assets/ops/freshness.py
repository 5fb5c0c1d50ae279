"""Is every recent day monitored by its deadline? The judgement, on plain values.

Day ``d`` is due at ``deadline`` (UTC) on day ``d + 1``: with the default 06:00 that is three
hours after ``daily_monitoring_schedule`` starts on it. A day is *judged* once it is due and
for ``window`` after (``FRESHNESS_WINDOW_DAYS``, default 7); a judged day without a
materialized partition is *late*.

Days older than the window are never judged, so a replay of 2021 (``make demo``, a backfill of
old months) cannot be late, however long ago its deadlines passed. And the judgement applies
only to a *live* deployment: one whose ``daily_monitoring_schedule`` is on, or that has
monitored a day inside the window. A lab that only replays history (schedule off, nothing
recent) is told nothing; a deployment whose schedule was turned off by mistake is still judged
for the window's days after its last monitored one, so someone hears of it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta


@dataclass(frozen=True)
class Freshness:
    live: bool
    judged: list[date]  # due days inside the window, oldest first
    late: list[date]  # judged days not materialized

    @property
    def passed(self) -> bool:
        return not self.late

    def describe(self) -> str:
        if not self.live:
            return (
                "not judged: daily_monitoring_schedule is off and no day of the window is "
                "monitored (a replay of history, or a lab)"
            )
        if not self.judged:
            return "no day due yet"
        span = f"{self.judged[0]}..{self.judged[-1]}"
        if self.passed:
            return f"every due day monitored ({span})"
        return f"{len(self.late)} day(s) not monitored by their deadline: {', '.join(map(str, self.late))}"


def due_at(day: date, deadline: time) -> datetime:
    """When ``day`` must be monitored by (UTC)."""
    return datetime.combine(day + timedelta(days=1), deadline, tzinfo=UTC)


def judge(
    now: datetime,
    *,
    materialized: set[date],
    deadline: time,
    window: timedelta,
    schedule_on: bool,
    first_day: date,
) -> Freshness:
    """The days judged at ``now`` and those of them that are late. ``first_day``: the first
    partition (no day before it can be due)."""
    now = now.astimezone(UTC) if now.tzinfo else now.replace(tzinfo=UTC)
    judged = []
    day = now.date() - timedelta(days=1)
    while day >= first_day and now - due_at(day, deadline) < window:
        if due_at(day, deadline) <= now:
            judged.append(day)
        day -= timedelta(days=1)
    judged.reverse()
    recent = any(d >= now.date() - window for d in materialized)
    live = schedule_on or recent
    if not live:
        return Freshness(live=False, judged=[], late=[])
    return Freshness(live=True, judged=judged, late=[d for d in judged if d not in materialized])
