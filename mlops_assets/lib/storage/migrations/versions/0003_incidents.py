"""Incidents: one row per breach episode of a model's rule, and ``alerts.incident_id``.

The alerts already recorded are grouped into incidents here, without anything being emailed
again: per (model, rule), breach days with fewer than 3 (``alerting.resolve_after_days``'
default) monitored days without a breach between them are one incident; an incident followed
by 3 such days is resolved on the third. An incident whose alerts were all emailed counts as
announced (firing, or resolved when it is), so no FIRING or RESOLVED goes out for it; one with
an alert still pending is announced on the sensor's next tick, as that alert would have been.
(The days judged quiet here are every monitored day that is not a breach of the rule: the
rule's ``min_rows`` lives in the spec, which a migration does not read.)

Revision ID: 0003_incidents
Revises: 0002_retraining_policy
Create Date: 2026-12-05
"""

from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision = "0003_incidents"
down_revision = "0002_retraining_policy"
branch_labels = None
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
RESOLVE_AFTER = 3


def upgrade() -> None:
    op.create_table(
        "incidents",
        sa.Column("id", ID, primary_key=True, autoincrement=True),
        sa.Column("model_name", sa.String(100), nullable=False),
        sa.Column("rule", sa.String(64), nullable=False),
        sa.Column("metric", sa.String(64), nullable=False),
        sa.Column("op", sa.String(2), nullable=False),
        sa.Column("threshold", sa.Float(), nullable=False),
        sa.Column("opened_day", sa.Date(), nullable=False),
        sa.Column("last_breach_day", sa.Date(), nullable=False),
        sa.Column("breach_days", sa.Integer(), nullable=False),
        sa.Column("worst_value", sa.Float(), nullable=False),
        sa.Column("worst_day", sa.Date(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("resolved_day", sa.Date()),
        sa.Column("resolved_by", sa.Text()),
        sa.Column("notified", sa.String(16)),
        sa.Column("notified_day", sa.Date()),
        sa.Column("emails_sent", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("last_error", sa.Text()),
        sa.Column("last_message_id", sa.String(255)),
        sa.Column("opened_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.UniqueConstraint("model_name", "rule", "opened_day", name="uq_incidents_model_rule_opened"),
    )
    op.create_index("ix_incidents_status", "incidents", ["model_name", "status"])
    with op.batch_alter_table("alerts") as table:
        table.add_column(sa.Column("incident_id", ID))
    migrate_alerts(op.get_bind())


def _group(alerts: list[dict], monitored: list) -> list[tuple[list[dict], object]]:
    """The alerts (one rule's, by day) cut into episodes: (alerts, resolved day or None)."""
    breach_days = {a["day"] for a in alerts}
    out: list[tuple[list[dict], object]] = []
    current: list[dict] = []
    quiet = []
    by_day = {a["day"]: a for a in alerts}
    for day in sorted(breach_days | set(monitored)):
        if day in breach_days:
            current.append(by_day[day])
            quiet = []
        elif current:
            quiet.append(day)
            if len(quiet) == RESOLVE_AFTER:
                out.append((current, day))
                current, quiet = [], []
    if current:
        out.append((current, None))
    return out


def migrate_alerts(conn) -> None:
    meta = sa.MetaData()
    alerts = sa.Table("alerts", meta, autoload_with=conn)
    daily = sa.Table("dummy_metrics", meta, autoload_with=conn)
    incidents = sa.Table("incidents", meta, autoload_with=conn)
    rows = [dict(r._mapping) for r in conn.execute(sa.select(alerts).order_by(alerts.c.timestamp))]
    now = datetime.now(UTC).replace(tzinfo=None)
    groups: dict[tuple[str, str], list[dict]] = {}
    for row in rows:
        row["day"] = row["timestamp"].date()
        groups.setdefault((row["model_name"], row["rule"]), []).append(row)
    monitored_of: dict[str, list] = {}
    for (model, rule), group in groups.items():
        if model not in monitored_of:
            stamps = conn.execute(sa.select(daily.c.timestamp).where(daily.c.model_name == model))
            monitored_of[model] = sorted({t.date() for (t,) in stamps})
        monitored = monitored_of[model]
        latest = monitored[-1] if monitored else max(a["day"] for a in group)
        for members, resolved in _group(group, monitored):
            first = members[0]
            worst = (max if first["op"] == ">" else min)(members, key=lambda a: a["value"])
            announced = all(a["status"] == "sent" for a in members)
            state = ("resolved" if resolved else "firing") if announced else None
            values = {
                "model_name": model,
                "rule": rule,
                "metric": first["metric"],
                "op": first["op"],
                "threshold": first["threshold"],
                "opened_day": first["day"],
                "last_breach_day": members[-1]["day"],
                "breach_days": len(members),
                "worst_value": worst["value"],
                "worst_day": worst["day"],
                "status": "resolved" if resolved else "open",
                "resolved_day": resolved,
                "resolved_by": (
                    f"{RESOLVE_AFTER} monitored day(s) without a breach (grouped by migration 0003)"
                    if resolved
                    else None
                ),
                "notified": state,
                "notified_day": latest if announced else None,
                "emails_sent": len({a["message_id"] for a in members if a["message_id"]}),
                "attempts": 0,
                "opened_at": now,
                "updated_at": now,
            }
            incident_id = conn.execute(sa.insert(incidents).values(**values)).inserted_primary_key[0]
            conn.execute(
                sa.update(alerts)
                .where(alerts.c.id.in_([a["id"] for a in members]))
                .values(incident_id=incident_id)
            )


def downgrade() -> None:
    with op.batch_alter_table("alerts") as table:
        table.drop_column("incident_id")
    op.drop_index("ix_incidents_status", "incidents")
    op.drop_table("incidents")
