"""Table ``ops_notices`` and its repository: each thing the platform noticed about itself (a
failed run, a day not monitored by its deadline, a retrain that never started), recorded once,
and whether its email went out.

(kind, key) is unique: the key names the event (a run's id, a check evaluation's id), so a
sensor tick, a daemon restart or a second sensor seeing the same event records nothing new.
A notice stays ``pending`` until an email carrying it is sent; a failed attempt is counted and
retried on the next tick, never dropped.
"""

from __future__ import annotations

import sqlalchemy as sa

from mlops_assets.lib.storage.engine import ID, MetricsDB, insert_new, metadata, utcnow

ops_notices = sa.Table(
    "ops_notices",
    metadata,
    sa.Column("id", ID, primary_key=True, autoincrement=True),
    sa.Column(
        "kind", sa.String(32), nullable=False
    ),  # run_failure | late_day | day_landed | retrain_not_started
    sa.Column("key", sa.String(255), nullable=False),  # what identifies the event within its kind
    sa.Column("model_name", sa.String(100)),  # the model spec it concerns, when one
    sa.Column("summary", sa.Text(), nullable=False),  # one line
    sa.Column("detail", sa.Text(), nullable=False),  # what a person needs to act, and where to look
    sa.Column("noticed_at", sa.DateTime(), nullable=False),  # UTC
    sa.Column("status", sa.String(16), nullable=False),  # pending | sent
    sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"),
    sa.Column("last_error", sa.Text()),
    sa.Column("sent_at", sa.DateTime()),
    sa.Column("message_id", sa.String(255)),
    sa.UniqueConstraint("kind", "key", name="uq_ops_notices_kind_key"),
    sa.Index("ix_ops_notices_status", "status"),
)
KEY = ("kind", "key")


class NoticeStore:
    """The ``ops_notices`` rows of the metrics DB ``db`` (dicts of the table's columns)."""

    def __init__(self, db: MetricsDB):
        self.db = db

    def record(self, notices: list[dict]) -> list[dict]:
        """Record notices (dicts with kind, key, model_name, summary, detail) as pending;
        returns those that were new. A (kind, key) already recorded is left alone."""
        if not notices:
            return []
        with self.db.transaction() as conn:
            known = {
                (r.kind, r.key)
                for r in conn.execute(
                    sa.select(ops_notices.c.kind, ops_notices.c.key).where(
                        ops_notices.c.key.in_({n["key"] for n in notices})
                    )
                )
            }
            new, seen = [], set(known)
            for n in notices:
                if (n["kind"], n["key"]) not in seen:
                    seen.add((n["kind"], n["key"]))
                    new.append(n)
            if new:
                now = utcnow()
                rows = [{**n, "noticed_at": now, "status": "pending", "attempts": 0} for n in new]
                conn.execute(insert_new(self.db.engine(), ops_notices, rows, KEY))
        return new

    def known(self, kind: str, keys: list[str]) -> set[str]:
        """Which of ``keys`` are recorded for ``kind``."""
        if not keys:
            return set()
        query = sa.select(ops_notices.c.key).where(ops_notices.c.kind == kind, ops_notices.c.key.in_(keys))
        with self.db.transaction() as conn:
            return {r.key for r in conn.execute(query)}

    def keys(self, kind: str, model_name: str) -> list[str]:
        """The keys of a model's notices of ``kind``."""
        query = sa.select(ops_notices.c.key).where(
            ops_notices.c.kind == kind, ops_notices.c.model_name == model_name
        )
        with self.db.transaction() as conn:
            return [r.key for r in conn.execute(query)]

    def pending(self) -> list[dict]:
        """The notices not emailed yet, oldest first."""
        query = sa.select(ops_notices).where(ops_notices.c.status == "pending").order_by(ops_notices.c.id)
        return self.db.mappings(query)

    def all(self) -> list[dict]:
        return self.db.mappings(sa.select(ops_notices).order_by(ops_notices.c.id))

    def mark(self, ids: list[int], *, sent: bool, message_id: str | None = None, error: str | None = None):
        """One more attempt at emailing ``ids``: sent (with the message's id), or failed."""
        values = {"attempts": ops_notices.c.attempts + 1, "last_error": error}
        if sent:
            values.update(status="sent", sent_at=utcnow(), message_id=message_id)
        with self.db.transaction() as conn:
            conn.execute(sa.update(ops_notices).where(ops_notices.c.id.in_(ids)).values(**values))
