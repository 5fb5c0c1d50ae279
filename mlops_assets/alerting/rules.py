"""Which days breach an alert rule: ``for_days`` consecutive qualifying days, judged from the
rows of ``dummy_metrics`` (a qualifying day has at least ``min_rows`` trips and a value past
the threshold in the rule's direction).

A breach is recorded on the last day of each such run: with ``for_days: 2``, a one-day spike
is no breach, two days in a row are one (on the second day), three are two. A day with too
few trips, or a day not monitored, ends a run.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from mlops_assets.metrics_db import MetricsDB
from mlops_core.specs import AlertRule

ONE_DAY = timedelta(days=1)


def breach(rule: AlertRule, row: dict) -> dict:
    """The ``alerts`` row of a breach of ``rule`` on ``row``'s day."""
    return {
        "rule": rule.id,
        "metric": rule.metric,
        "op": rule.op,
        "threshold": rule.threshold,
        "for_days": rule.for_days,
        "timestamp": row["timestamp"],
        "value": float(row["value"]),
        "model_version": row.get("model_version"),
        "retrain": rule.retrain,
    }


def streak_ends(rule: AlertRule, new_days: list[datetime], qualifying: dict[datetime, dict]) -> list[dict]:
    """Breaches among the days a newly computed row can complete a run of ``for_days``: each
    new day and the ``for_days - 1`` days after it (a re-computed day may complete a later
    day's run). ``qualifying`` maps every qualifying day around them to its row."""
    k = rule.for_days
    candidates = sorted({day + i * ONE_DAY for day in new_days for i in range(k)})
    out = []
    for end in candidates:
        if all(end - i * ONE_DAY in qualifying for i in range(k)):
            out.append(breach(rule, qualifying[end]))
    return out


def new_breaches(db: MetricsDB, model_name: str, rule: AlertRule, since: datetime | None) -> list[dict]:
    """The breaches of ``rule`` that rows computed at or after ``since`` can make (all rows
    when ``since`` is None). Recording them is idempotent: the caller records each once."""
    new = db.qualifying_rows(model_name, rule, computed_since=since)
    if rule.for_days == 1 or not new:
        return [breach(rule, row) for row in new]
    reach = (rule.for_days - 1) * ONE_DAY
    around = db.qualifying_rows(
        model_name, rule, start=new[0]["timestamp"] - reach, end=new[-1]["timestamp"] + reach
    )
    return streak_ends(rule, [row["timestamp"] for row in new], {row["timestamp"]: row for row in around})
