"""Incidents: a rule's breaches grouped into episodes, as on-call people know them (an
Alertmanager group, a Grafana alert instance, a PagerDuty incident).

Per (model, rule):

* an incident **opens** on a breach no incident holds (the rule's ``for_days`` and
  ``min_rows`` decide what a breach is, as before);
* it **continues** while breaches come: each breach day joins it (a re-materialized day inside
  it joins it too, and is never an incident of its own);
* it **resolves** on the ``alerting.resolve_after_days``-th monitored day without a breach
  (a *quiet* day: enough trips for the rule, value within it; a day not monitored, or with
  too few trips, neither continues nor ends it), or on the first monitored day of a model
  that a promotion or rollback put in effect after it opened, when no breach came from that
  day on: the change it called for has happened. A later breach opens a new incident.

Its emails (``due``): one when it opens (FIRING), a REMINDER each ``alerting.repeat_every_days``
monitored days while it stays open, one when it resolves (RESOLVED; the only one for an
incident that opened and resolved between two evaluations, as a month's backfill does).
Pure functions over dicts of the tables' rows; the sensor reads and writes them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

from mlops_assets.alerting.store import FIRING, OPEN, REMINDER, RESOLVED
from mlops_core.specs import AlertRule


@dataclass(frozen=True)
class Change:
    """A model put in effect from ``day`` by a promotion or a rollback (``text`` says which)."""

    day: date
    text: str


@dataclass
class Outcome:
    """What one evaluation did to a rule's incidents."""

    changed: list[dict] = field(default_factory=list)  # incidents to save (new ones have no id)
    assigned: dict[int, dict] = field(default_factory=dict)  # alert id -> its incident
    opened: list[dict] = field(default_factory=list)
    resolved: list[dict] = field(default_factory=list)


def changes_of(timeline: list[dict]) -> list[Change]:
    """The promotions and rollbacks of a model's timeline entries, by day."""
    out = []
    for entry in timeline:
        if entry.get("previous_version") is None and entry.get("kind") in (None, "first"):
            continue
        what = "rolled back to" if entry.get("kind") == "rolled_back" else "promoted"
        out.append(Change(entry["effective_from"], f"v{entry['model_version']} {what}"))
    return sorted(out, key=lambda c: c.day)


def _new(rule: AlertRule, alert: dict) -> dict:
    day = alert["timestamp"].date()
    return {
        "id": None,
        "rule": rule.id,
        "metric": rule.metric,
        "op": rule.op,
        "threshold": rule.threshold,
        "opened_day": day,
        "last_breach_day": day,
        "breach_days": 0,
        "worst_value": alert["value"],
        "worst_day": day,
        "status": OPEN,
        "resolved_day": None,
        "resolved_by": None,
        "notified": None,
        "notified_day": None,
    }


def _join(rule: AlertRule, inc: dict, alert: dict) -> None:
    day = alert["timestamp"].date()
    inc["breach_days"] += 1
    inc["opened_day"] = min(inc["opened_day"], day)
    inc["last_breach_day"] = max(inc["last_breach_day"], day)
    worse = alert["value"] > inc["worst_value"] if rule.op == ">" else alert["value"] < inc["worst_value"]
    if worse:
        inc["worst_value"], inc["worst_day"] = alert["value"], day


def resolution(
    inc: dict, quiet: dict[date, bool], changes: list[Change], resolve_after: int, before: date | None = None
) -> tuple[date, str] | None:
    """When and why the open ``inc`` resolves, judged on the monitored days before ``before``
    (all when None): ``quiet`` maps each monitored day to whether it is quiet for the rule."""
    last = inc["last_breach_day"]
    days = sorted(d for d in quiet if d > last and (before is None or d < before))
    calm = [d for d in days if quiet[d]]
    found: list[tuple[date, str]] = []
    if len(calm) >= resolve_after:
        run = calm[:resolve_after]
        found.append((run[-1], f"{resolve_after} monitored day(s) without a breach ({run[0]} .. {run[-1]})"))
    for change in changes:
        if change.day > inc["opened_day"] and change.day > last and any(d >= change.day for d in days):
            found.append((change.day, f"{change.text}, in effect from {change.day}, with no breach since"))
            break
    return min(found, key=lambda f: f[0]) if found else None


def _resolve(inc: dict, how: tuple[date, str], out: Outcome) -> None:
    inc["status"], inc["resolved_day"], inc["resolved_by"] = RESOLVED, how[0], how[1]
    out.resolved.append(inc)


def advance(
    rule: AlertRule,
    incidents: list[dict],
    alerts: list[dict],
    quiet: dict[date, bool],
    changes: list[Change],
    resolve_after: int,
) -> Outcome:
    """Fold a rule's new ``alerts`` (not yet in an incident) into its ``incidents`` and resolve
    what the monitored days resolve. Mutates the incident dicts; says what changed."""
    out = Outcome()
    touched: dict[int, dict] = {}
    current = next((i for i in incidents if i["status"] == OPEN), None)
    closed = [i for i in incidents if i["status"] == RESOLVED]
    for alert in sorted(alerts, key=lambda a: a["timestamp"]):
        day = alert["timestamp"].date()
        home = next((i for i in closed if i["opened_day"] <= day <= i["resolved_day"]), None)
        if home is None and current is not None:
            how = resolution(current, quiet, changes, resolve_after, before=day)
            if how is not None and day > how[0]:
                _resolve(current, how, out)
                closed.append(current)
                current = None
            else:
                home = current
        if home is None:
            home = current = _new(rule, alert)
            out.opened.append(current)
        _join(rule, home, alert)
        touched[id(home)] = home
        out.assigned[alert["id"]] = home
    if current is not None:
        how = resolution(current, quiet, changes, resolve_after)
        if how is not None:
            _resolve(current, how, out)
            touched[id(current)] = current
    out.changed = list(touched.values())
    return out


def due(inc: dict, latest: date, repeat_every: int) -> str | None:
    """The email an incident is due (FIRING, REMINDER, RESOLVED), or None, when the latest
    monitored day is ``latest``."""
    if inc["status"] == OPEN:
        if inc["notified"] is None:
            return FIRING
        if inc["notified_day"] is None or (latest - inc["notified_day"]).days >= repeat_every:
            return REMINDER
        return None
    return None if inc["notified"] == RESOLVED else RESOLVED
