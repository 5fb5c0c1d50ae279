"""Tables ``alerts`` and ``incidents`` and their repositories.

``alerts``: each (model, rule, day) breach, recorded once, and whether its email went out.

The alert sensor records breaches as ``pending`` and marks them ``sent`` (or counts a failed
attempt) after each email; Grafana, the history chart and the demo read them. (model, rule,
timestamp) is unique: ticks, daemon restarts and re-materializations never alert a rule's day
twice.

``incidents``: one row per breach episode of a model's rule.

``alerts`` keeps each (model, rule, day) once and points to its incident (``incident_id``);
an incident is what a person is told about: opened, reminded while it lasts, resolved. What
opens, continues and resolves one is ``alerting/incidents.py``; what its emails say,
``alerting/incident_messages.py``. (model, rule, opened_day) is unique.
"""

from __future__ import annotations

from datetime import date, datetime

import sqlalchemy as sa

from mlops_assets.lib.storage.engine import ID, MetricsDB, insert_new, metadata, utcnow

alerts_table = sa.Table(
    "alerts",
    metadata,
    sa.Column("id", ID, primary_key=True, autoincrement=True),
    sa.Column("model_name", sa.String(100), nullable=False),
    sa.Column("rule", sa.String(64), nullable=False),  # the rule's id: its name, else its metric
    sa.Column("metric", sa.String(64), nullable=False),  # the dummy_metrics column it watches
    sa.Column("op", sa.String(2), nullable=False),  # > or <
    sa.Column("threshold", sa.Float(), nullable=False),
    sa.Column("for_days", sa.Integer(), nullable=False, server_default="1"),
    sa.Column("timestamp", sa.DateTime(), nullable=False),  # the breaching day (dummy_metrics)
    sa.Column("value", sa.Float(), nullable=False),  # the metric on that day
    sa.Column("model_version", sa.String(50)),
    sa.Column("retrain", sa.Boolean(), nullable=False),  # whether the rule requests a retrain
    sa.Column("detected_at", sa.DateTime(), nullable=False),  # UTC
    sa.Column("status", sa.String(16), nullable=False),  # pending | sent
    sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"),
    sa.Column("last_error", sa.Text()),
    sa.Column("sent_at", sa.DateTime()),
    sa.Column("message_id", sa.String(255)),
    sa.Column("incident_id", ID),  # incidents.id: the episode this breach belongs to
    sa.UniqueConstraint("model_name", "rule", "timestamp", name="uq_alerts_model_rule_timestamp"),
    sa.Index("ix_alerts_status", "model_name", "status"),
)
KEY = ("model_name", "rule", "timestamp")


class AlertStore:
    """The ``alerts`` rows of the metrics DB ``db`` (dicts of the table's columns)."""

    def __init__(self, db: MetricsDB):
        self.db = db

    def record(self, model_name: str, breaches: list[dict]) -> list[dict]:
        """Record breaches (dicts with the ``alerts`` columns rule, metric, op, threshold,
        for_days, timestamp, value, model_version, retrain) as pending alerts; returns the new.

        A (model, rule, day) already recorded is left alone: each breach is alerted once,
        whatever the number of ticks, restarts or re-materializations that see it again.
        """
        if not breaches:
            return []
        with self.db.transaction() as conn:
            known = {
                (r.rule, r.timestamp)
                for r in conn.execute(
                    sa.select(alerts_table.c.rule, alerts_table.c.timestamp).where(
                        alerts_table.c.model_name == model_name,
                        alerts_table.c.timestamp.in_({b["timestamp"] for b in breaches}),
                    )
                )
            }
            new, seen = [], set()
            for b in breaches:
                key = (b["rule"], b["timestamp"])
                if key not in known and key not in seen:
                    seen.add(key)
                    new.append(b)
            if new:
                now = utcnow()
                rows = [
                    {**b, "model_name": model_name, "detected_at": now, "status": "pending", "attempts": 0}
                    for b in new
                ]
                conn.execute(insert_new(self.db.engine(), alerts_table, rows, KEY))
        return new

    def all(self, model_name: str, status: str | None = None) -> list[dict]:
        """The model's alerts by day and rule (only those with ``status`` when given)."""
        query = sa.select(alerts_table).where(alerts_table.c.model_name == model_name)
        if status is not None:
            query = query.where(alerts_table.c.status == status)
        with self.db.transaction() as conn:
            return [
                dict(r._mapping)
                for r in conn.execute(query.order_by(alerts_table.c.timestamp, alerts_table.c.rule))
            ]

    def mark(self, ids: list[int], *, sent: bool, message_id: str | None = None, error: str | None = None):
        """One more attempt at emailing ``ids``: sent (with the message's id), or failed."""
        values = {"attempts": alerts_table.c.attempts + 1, "last_error": error}
        if sent:
            values.update(status="sent", sent_at=utcnow(), message_id=message_id)
        with self.db.transaction() as conn:
            conn.execute(sa.update(alerts_table).where(alerts_table.c.id.in_(ids)).values(**values))

    def latest_retrain_breach(self, model_name: str) -> dict | None:
        """The latest alert of a rule that requests a retrain (the first rule's, by id, when
        several breached that day), or None."""
        query = (
            sa.select(alerts_table)
            .where(alerts_table.c.model_name == model_name, alerts_table.c.retrain.is_(True))
            .order_by(alerts_table.c.timestamp.desc(), alerts_table.c.rule)
            .limit(1)
        )
        with self.db.transaction() as conn:
            row = conn.execute(query).first()
        return dict(row._mapping) if row else None

    def retrain_breaches(self, model_name: str, since: datetime) -> list[dict]:
        """Alerts of rules that ask for a retrain, on days from ``since`` on, by day and rule."""
        query = (
            sa.select(alerts_table)
            .where(
                alerts_table.c.model_name == model_name,
                alerts_table.c.retrain.is_(True),
                alerts_table.c.timestamp >= since,
            )
            .order_by(alerts_table.c.timestamp, alerts_table.c.rule)
        )
        return self.db.mappings(query)


OPEN, RESOLVED = "open", "resolved"
# The states an incident's emails announce, in the order a subject names them.
FIRING, REMINDER = "firing", "reminder"

incidents_table = sa.Table(
    "incidents",
    metadata,
    sa.Column("id", ID, primary_key=True, autoincrement=True),
    sa.Column("model_name", sa.String(100), nullable=False),
    sa.Column("rule", sa.String(64), nullable=False),
    sa.Column("metric", sa.String(64), nullable=False),
    sa.Column("op", sa.String(2), nullable=False),
    sa.Column("threshold", sa.Float(), nullable=False),
    sa.Column("opened_day", sa.Date(), nullable=False),  # its first breach day
    sa.Column("last_breach_day", sa.Date(), nullable=False),
    sa.Column("breach_days", sa.Integer(), nullable=False),
    sa.Column("worst_value", sa.Float(), nullable=False),
    sa.Column("worst_day", sa.Date(), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),  # open | resolved
    sa.Column("resolved_day", sa.Date()),
    sa.Column("resolved_by", sa.Text()),  # quiet days, a promotion, a rollback
    # The last state emailed (firing | reminder | resolved; None: nothing yet), and the latest
    # monitored day when it was: reminders count monitored days from it.
    sa.Column("notified", sa.String(16)),
    sa.Column("notified_day", sa.Date()),
    sa.Column("emails_sent", sa.Integer(), nullable=False, server_default="0"),
    sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"),  # failed sends in a row
    sa.Column("last_error", sa.Text()),
    sa.Column("last_message_id", sa.String(255)),
    sa.Column("opened_at", sa.DateTime(), nullable=False),  # UTC
    sa.Column("updated_at", sa.DateTime(), nullable=False),  # UTC
    sa.UniqueConstraint("model_name", "rule", "opened_day", name="uq_incidents_model_rule_opened"),
    sa.Index("ix_incidents_status", "model_name", "status"),
)
STATE_COLUMNS = (
    "opened_day",
    "last_breach_day",
    "breach_days",
    "worst_value",
    "worst_day",
    "status",
    "resolved_day",
    "resolved_by",
)


class IncidentStore:
    """The ``incidents`` rows of the metrics DB ``db`` (dicts of the table's columns)."""

    def __init__(self, db: MetricsDB):
        self.db = db

    def all(self, model_name: str, *, rule: str | None = None, status: str | None = None) -> list[dict]:
        """The model's incidents (of one rule, in one status, when given), oldest first."""
        query = sa.select(incidents_table).where(incidents_table.c.model_name == model_name)
        if rule is not None:
            query = query.where(incidents_table.c.rule == rule)
        if status is not None:
            query = query.where(incidents_table.c.status == status)
        with self.db.transaction() as conn:
            rows = conn.execute(query.order_by(incidents_table.c.opened_day, incidents_table.c.rule))
            return [dict(r._mapping) for r in rows]

    def unassigned_alerts(self, model_name: str, rule: str) -> list[dict]:
        query = (
            sa.select(alerts_table)
            .where(
                alerts_table.c.model_name == model_name,
                alerts_table.c.rule == rule,
                alerts_table.c.incident_id.is_(None),
            )
            .order_by(alerts_table.c.timestamp)
        )
        return self.db.mappings(query)

    def alerts_of(self, incident_id: int) -> list[dict]:
        query = (
            sa.select(alerts_table)
            .where(alerts_table.c.incident_id == incident_id)
            .order_by(alerts_table.c.timestamp)
        )
        return self.db.mappings(query)

    def save(self, model_name: str, incidents: list[dict], assigned: dict[int, dict]) -> None:
        """Insert the new incidents (no ``id``) and update the others' state, then point each
        alert id of ``assigned`` to its incident, in one transaction."""
        now = utcnow()
        with self.db.transaction() as conn:
            for inc in incidents:
                state = {c: inc[c] for c in STATE_COLUMNS}
                if inc.get("id") is None:
                    row = {
                        **state,
                        "model_name": model_name,
                        "rule": inc["rule"],
                        "metric": inc["metric"],
                        "op": inc["op"],
                        "threshold": inc["threshold"],
                        "emails_sent": 0,
                        "attempts": 0,
                        "opened_at": now,
                        "updated_at": now,
                    }
                    inc["id"] = conn.execute(sa.insert(incidents_table).values(**row)).inserted_primary_key[0]
                else:
                    conn.execute(
                        sa.update(incidents_table)
                        .where(incidents_table.c.id == inc["id"])
                        .values(**state, updated_at=now)
                    )
            for alert_id, inc in assigned.items():
                conn.execute(
                    sa.update(alerts_table).where(alerts_table.c.id == alert_id).values(incident_id=inc["id"])
                )

    def mark_sent(self, sent: list[tuple[dict, str]], latest: date, message_id: str) -> None:
        """Each (incident, state) of one email went out: its state and day are remembered, and
        its alerts are marked sent."""
        now = utcnow()
        with self.db.transaction() as conn:
            for inc, state in sent:
                conn.execute(
                    sa.update(incidents_table)
                    .where(incidents_table.c.id == inc["id"])
                    .values(
                        notified=state,
                        notified_day=latest,
                        emails_sent=incidents_table.c.emails_sent + 1,
                        attempts=0,
                        last_error=None,
                        last_message_id=message_id,
                        updated_at=now,
                    )
                )
                conn.execute(
                    sa.update(alerts_table)
                    .where(alerts_table.c.incident_id == inc["id"], alerts_table.c.status == "pending")
                    .values(
                        status="sent",
                        sent_at=now,
                        message_id=message_id,
                        attempts=alerts_table.c.attempts + 1,
                    )
                )

    def mark_failed(self, incidents: list[dict], error: str) -> None:
        """An email failed: the incidents' state changes stay due (retried on the next tick)."""
        ids = [inc["id"] for inc in incidents]
        with self.db.transaction() as conn:
            conn.execute(
                sa.update(incidents_table)
                .where(incidents_table.c.id.in_(ids))
                .values(attempts=incidents_table.c.attempts + 1, last_error=error, updated_at=utcnow())
            )
            conn.execute(
                sa.update(alerts_table)
                .where(alerts_table.c.incident_id.in_(ids), alerts_table.c.status == "pending")
                .values(attempts=alerts_table.c.attempts + 1, last_error=error)
            )
