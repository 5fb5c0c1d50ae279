"""Which days breach an alert rule: ``for_days`` consecutive qualifying days (a qualifying day
has at least ``min_rows`` trips and a value past the threshold in the rule's direction:
``AlertRule.qualifies``; the store selects such rows with the same comparison).

A breach is recorded on the last day of each such run: with ``for_days: 2``, a one-day spike
is no breach, two days in a row are one (on the second day), three are two. A day with too
few trips, or a day not monitored, ends a run. Pure functions: the sensor reads the rows.
"""

from __future__ import annotations

from datetime import datetime

from mlops_assets.lib.days import ONE_DAY, run_ends
from mlops_core.daily_metrics import DailyMetrics
from mlops_core.specs import AlertRule


def breach(rule: AlertRule, row: DailyMetrics) -> dict:
    """The ``alerts`` row of a breach of ``rule`` on ``row``'s day."""
    return {
        "rule": rule.id,
        "metric": rule.metric,
        "op": rule.op,
        "threshold": rule.threshold,
        "for_days": rule.for_days,
        "timestamp": row.timestamp,
        "value": float(getattr(row, rule.metric)),
        "model_version": row.model_version,
        "retrain": bool(rule.retrain),
    }


def reach(rule: AlertRule):
    """How far around a new row the rows that can complete a run with it lie."""
    return (rule.for_days - 1) * ONE_DAY


def streak_ends(
    rule: AlertRule, new_days: list[datetime], qualifying: dict[datetime, DailyMetrics]
) -> list[dict]:
    """Breaches among the days a newly computed row can complete a run of ``for_days``: each
    new day and the ``for_days - 1`` days after it (a re-computed day may complete a later
    day's run). ``qualifying`` maps every qualifying day around them to its row."""
    candidates = {day + i * ONE_DAY for day in new_days for i in range(rule.for_days)}
    return [breach(rule, qualifying[end]) for end in run_ends(qualifying, rule.for_days) if end in candidates]
