"""Table ``incidents`` and its repository: one row per breach episode of a model's rule.

``alerts`` keeps each (model, rule, day) once and points to its incident (``incident_id``);
an incident is what a person is told about: opened, reminded while it lasts, resolved. What
opens, continues and resolves one is ``alerting/incidents.py``; what its emails say,
``alerting/incident_messages.py``. (model, rule, opened_day) is unique.
"""

from __future__ import annotations

from datetime import date

import sqlalchemy as sa

from mlops_assets.alerting.store import alerts_table
from mlops_assets.lib.storage.engine import ID, MetricsDB, metadata, utcnow

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
        with self.db.transaction() as conn:
            return [dict(r._mapping) for r in conn.execute(query)]

    def alerts_of(self, incident_id: int) -> list[dict]:
        query = (
            sa.select(alerts_table)
            .where(alerts_table.c.incident_id == incident_id)
            .order_by(alerts_table.c.timestamp)
        )
        with self.db.transaction() as conn:
            return [dict(r._mapping) for r in conn.execute(query)]

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
