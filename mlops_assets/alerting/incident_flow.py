"""The alert sensor's incident steps: fold the new breaches into incidents, then email every
incident whose state changed, in one message per evaluation.

A failed send (SMTP down, auth refused) changes nothing but the incidents' attempt count: what
was due stays due and goes out on the next tick; an email that went out is remembered in the
incidents (their notified state and day), so no tick, restart or re-materialized day sends it
twice.
"""

from __future__ import annotations

from datetime import date

from mlops_assets.alerting import incident_messages as M
from mlops_assets.alerting.incidents import advance, changes_of, due
from mlops_assets.alerting.store import IncidentStore
from mlops_assets.lib.links import Links
from mlops_assets.lib.mailer import Mailer, MailError
from mlops_assets.lib.storage.engine import MetricsDB
from mlops_assets.monitoring import history_chart
from mlops_assets.monitoring.segments import top_segments_lines
from mlops_assets.monitoring.store import DailyMetricsStore
from mlops_assets.training.store import DecisionStore, TimelineStore
from mlops_core.specs import AlertRule, ModelSpec


def quiet_days(rule: AlertRule, rows) -> dict[date, bool]:
    """Each monitored day -> whether it is quiet for ``rule``: enough trips, value within it."""
    return {
        r.timestamp.date(): (r.n_rows or 0) >= rule.min_rows
        and not rule.qualifies(getattr(r, rule.metric), r.n_rows)
        for r in rows
    }


def update(spec: ModelSpec, db: MetricsDB, log, notes: list[str]) -> date | None:
    """Fold the spec's new alerts into incidents and resolve what the monitored days resolve;
    returns the latest monitored day (None before any)."""
    rows = DailyMetricsStore(db).rows(spec.name)
    if not rows:
        return None
    store = IncidentStore(db)
    changes = changes_of(TimelineStore(db).entries(spec.name))
    for rule in spec.monitoring.rules:
        out = advance(
            rule,
            store.all(spec.name, rule=rule.id),
            store.unassigned_alerts(spec.name, rule.id),
            quiet_days(rule, rows),
            changes,
            spec.alerting.resolve_after_days,
        )
        if not out.changed:
            continue
        store.save(spec.name, out.changed, out.assigned)
        for inc in out.opened:
            log.info(
                "%s: incident #%s of %s opened on %s", spec.name, inc["id"], rule.label(), inc["opened_day"]
            )
            notes.append(f"incident #{inc['id']} ({rule.label()}) opened {inc['opened_day']}")
        for inc in out.resolved:
            log.info(
                "%s: incident #%s of %s resolved: %s", spec.name, inc["id"], rule.label(), inc["resolved_by"]
            )
            notes.append(f"incident #{inc['id']} ({rule.label()}) resolved {inc['resolved_day']}")
    return rows[-1].timestamp.date()


def where_of(spec: ModelSpec, db: MetricsDB, alerts: list[dict]) -> dict[date, list[str]]:
    """Per breach day, the segments that explain most of its excess error (segment_metrics)."""
    days = {a["timestamp"].date() for a in alerts}
    min_rows = spec.monitoring.segment_min_rows
    return {d: top_segments_lines(db, spec.name, d, min_rows=min_rows) for d in sorted(days)}


def incident_chart(history: history_chart.History, inc: dict, latest: date) -> bytes:
    return history_chart.draw(history_chart.cut(history, inc["opened_day"], inc["resolved_day"] or latest))


def send(
    spec: ModelSpec,
    db: MetricsDB,
    mailer: Mailer,
    links: Links,
    log,
    notes: list[str],
    *,
    latest: date | None,
    retrain_note: str | None,
) -> None:
    """Email every incident with a state change due (opened, reminder, resolved) in one message."""
    if latest is None:
        return
    store = IncidentStore(db)
    items = [
        (inc, state)
        for inc in store.all(spec.name)
        if (state := due(inc, latest, spec.alerting.repeat_every_days)) is not None
    ]
    if not items:
        return
    history = history_chart.read_history(spec, db)
    rows = {r.timestamp.date(): r for r in history.rows}
    decisions = DecisionStore(db).all(spec.name)
    sections, images = [], {}
    for inc, state in items:
        pending = [a for a in store.alerts_of(inc["id"]) if a["status"] == "pending"]
        sections.append(
            M.section(
                spec,
                inc,
                state,
                new_alerts=pending,
                rows=rows,
                decisions=decisions,
                note=retrain_note,
                links=links,
                where=where_of(spec, db, pending),
            )
        )
        cid = f"incident-{inc['id']}"
        images[cid] = (
            incident_chart(history, inc, latest),
            f"Incident #{inc['id']}: {M.rule_name(inc)}, "
            f"{inc['opened_day']} .. {inc['resolved_day'] or latest}",
        )
    text = M.body(spec, sections, links)
    ids = ", ".join(f"#{inc['id']} {state}" for inc, state in items)
    try:
        msg = mailer.compose(
            M.subject(spec.name, items),
            text,
            M.html_body(text, {cid: caption for cid, (_, caption) in images.items()}),
            {cid: png for cid, (png, _) in images.items()},
        )
        where = mailer.send(msg)
    except MailError as exc:
        store.mark_failed([inc for inc, _ in items], str(exc))
        log.error("%s: incident email (%s) NOT sent, will retry on the next tick: %s", spec.name, ids, exc)
        notes.append(f"incident email failed ({ids}): {exc}")
        return
    store.mark_sent(items, latest, msg["Message-ID"])
    log.info("%s: incident email (%s) sent to %s", spec.name, ids, where)
    notes.append(f"emailed {ids}")
