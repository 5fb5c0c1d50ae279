"""What the model timeline means: which version is in effect on a day, and from when a new one
takes over. Pure functions over the entries ``TimelineStore.entries`` returns (ordered by
``effective_from``); the one place these rules are written.

* The version in effect on day *d* is the entry with the latest ``effective_from`` <= *d*
  (the spec's first model from the month after its training month; later ones from their
  promotion). None before the first entry.
* A newly promoted model takes over from the first day not monitored yet, never before its
  own earliest day (the day after its data) and never before the current entry: days already
  monitored keep the model they were monitored with.
"""

from __future__ import annotations

from datetime import date, timedelta


def in_effect_on(timeline: list[dict], day: date) -> dict | None:
    """The entry in effect on ``day``: the latest ``effective_from`` <= day, or None."""
    current = None
    for entry in timeline:
        if entry["effective_from"] <= day:
            current = entry
    return current


def versions_on(timeline: list[dict], days: list[date]) -> tuple[dict[date, str], list[date]]:
    """The version in effect on each of ``days``, and the days that have none."""
    found, missing = {}, []
    for day in days:
        entry = in_effect_on(timeline, day)
        if entry is None:
            missing.append(day)
        else:
            found[day] = str(entry["model_version"])
    return found, missing


def current(timeline: list[dict]) -> dict | None:
    """The newest entry (the champion's, unless the alias was moved by hand)."""
    return timeline[-1] if timeline else None


def trained_until(timeline: list[dict]) -> date | None:
    """The last day of the newest entry's training data (None: unknown or no entry)."""
    entry = current(timeline)
    return entry["window_end"] if entry else None


def takes_over_from(timeline: list[dict], earliest: date, last_monitored: date | None) -> date:
    """The day a newly promoted model is in effect from: the first day not monitored yet, but
    not before ``earliest`` nor before the current entry's day."""
    days = [earliest]
    if last_monitored is not None:
        days.append(last_monitored + timedelta(days=1))
    if timeline:
        days.append(timeline[-1]["effective_from"])
    return max(days)


def shadow_on(timeline: list[dict], day: date, shadow_days: int) -> str | None:
    """The previous champion to score beside the one in effect on ``day``: the version a
    promotion replaced, for the ``shadow_days`` days from the promotion's first day (None
    otherwise, and never after a rollback or for the spec's first model)."""
    entry = in_effect_on(timeline, day)
    if entry is None or entry.get("kind") != "promoted" or not entry.get("previous_version"):
        return None
    if (day - entry["effective_from"]).days >= shadow_days:
        return None
    return str(entry["previous_version"])
