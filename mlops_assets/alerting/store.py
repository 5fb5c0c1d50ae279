"""Table ``alerts`` and its repository: each (model, rule, day) breach, recorded once, and
whether its email went out.

The alert sensor records breaches as ``pending`` and marks them ``sent`` (or counts a failed
attempt) after each email; Grafana, the history chart and the demo read them. (model, rule,
timestamp) is unique: ticks, daemon restarts and re-materializations never alert a rule's day
twice.
"""

from __future__ import annotations

from datetime import datetime

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
        with self.db.transaction() as conn:
            return [dict(r._mapping) for r in conn.execute(query)]
