"""Table ``model_timeline`` and its repository: which model version is in effect from which day.

Training and promotion write it (one row per model and ``effective_from`` day); monitoring
reads it to score each day with the model in effect that day, so re-running an old day after
a later promotion reproduces the old row. What the rows mean is ``training/timeline.py``.
"""

from __future__ import annotations

from datetime import date

import sqlalchemy as sa

from mlops_assets.lib.storage.engine import ID, MetricsDB, metadata, upsert_statement, utcnow

model_timeline = sa.Table(
    "model_timeline",
    metadata,
    sa.Column("id", ID, primary_key=True, autoincrement=True),
    sa.Column("model_name", sa.String(100), nullable=False),
    sa.Column("model_version", sa.String(50), nullable=False),
    sa.Column("effective_from", sa.Date(), nullable=False),
    sa.Column("recorded_at", sa.DateTime(), nullable=False),  # UTC
    sa.Column("reason", sa.Text()),
    sa.Column("holdout_rmse", sa.Float()),
    sa.Column("previous_version", sa.String(50)),
    sa.Column("previous_rmse", sa.Float()),
    sa.Column("window_end", sa.Date()),  # last day of the model's training data
    sa.Column("kind", sa.String(16)),  # first | promoted | rolled_back
    # new − previous RMSE on the same trips, with its interval (training/paired.py)
    sa.Column("rmse_diff", sa.Float()),
    sa.Column("rmse_diff_low", sa.Float()),
    sa.Column("rmse_diff_high", sa.Float()),
    sa.UniqueConstraint("model_name", "effective_from", name="uq_model_timeline_model_day"),
)

model_decisions = sa.Table(
    "model_decisions",
    metadata,
    sa.Column("id", ID, primary_key=True, autoincrement=True),
    sa.Column("model_name", sa.String(100), nullable=False),
    # What the decision is about, unique per model: retrain:<window end>, train:<month>,
    # rollback:v<version>. Re-deciding the same thing replaces the row.
    sa.Column("decision_key", sa.String(120), nullable=False),
    # promoted | not_promoted | refused (nothing trained) | rolled_back
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("day", sa.Date(), nullable=False),  # the window's last day / the day judged
    sa.Column("decided_at", sa.DateTime(), nullable=False),  # UTC
    sa.Column("version", sa.String(50)),  # the candidate (or the version rolled back)
    sa.Column("champion_version", sa.String(50)),  # the model it was judged against
    sa.Column("episode_start", sa.Date()),  # the breach episode a retrain reacted to
    sa.Column("attempt", sa.Integer()),  # the retrain's attempt in its episode (1, 2, ...)
    sa.Column("trigger", sa.Text()),  # the rule that asked for it
    sa.Column("window_start", sa.Date()),
    sa.Column("reason", sa.Text(), nullable=False),
    sa.Column("rmse_diff", sa.Float()),
    sa.Column("rmse_diff_low", sa.Float()),
    sa.Column("rmse_diff_high", sa.Float()),
    sa.Column("n_trips", sa.Integer()),
    sa.Column("effective_from", sa.Date()),
    sa.Column("dagster_run_id", sa.String(64)),
    # A decision a person is told of (a rollback): pending until emailed, then sent.
    sa.Column("notify_status", sa.String(16)),
    sa.Column("notify_attempts", sa.Integer(), nullable=False, server_default="0"),
    sa.Column("message_id", sa.String(255)),
    sa.Column("last_error", sa.Text()),
    sa.UniqueConstraint("model_name", "decision_key", name="uq_model_decisions_model_key"),
    sa.Index("ix_model_decisions_episode", "model_name", "episode_start"),
)
DECISION_COLUMNS = {c.name for c in model_decisions.columns} - {"id", "model_name", "decided_at"}


class TimelineStore:
    """The ``model_timeline`` rows of the metrics DB ``db`` (dicts of the table's columns)."""

    def __init__(self, db: MetricsDB):
        self.db = db

    def record(
        self,
        model_name: str,
        version: str,
        effective_from: date,
        *,
        reason: str,
        holdout_rmse: float | None = None,
        previous_version: str | None = None,
        previous_rmse: float | None = None,
        window_end: date | None = None,
        kind: str | None = None,
        rmse_diff: tuple[float, float, float] | None = None,
    ) -> None:
        """``version`` is in effect from ``effective_from`` (replacing an entry of that day);
        ``kind``: first, promoted or rolled_back (default: first without a previous version,
        else promoted); ``rmse_diff``: (difference, low, high) against the previous version."""
        row = {
            "model_name": model_name,
            "model_version": str(version),
            "effective_from": effective_from,
            "recorded_at": utcnow(),
            "reason": reason,
            "holdout_rmse": holdout_rmse,
            "previous_version": previous_version,
            "previous_rmse": previous_rmse,
            "window_end": window_end,
            "kind": kind or ("first" if previous_version is None else "promoted"),
            "rmse_diff": rmse_diff[0] if rmse_diff else None,
            "rmse_diff_low": rmse_diff[1] if rmse_diff else None,
            "rmse_diff_high": rmse_diff[2] if rmse_diff else None,
        }
        with self.db.transaction() as conn:
            conn.execute(
                upsert_statement(self.db.engine(), model_timeline, [row], ("model_name", "effective_from"))
            )

    def entries(self, model_name: str) -> list[dict]:
        """The model's entries, ordered by ``effective_from``."""
        query = (
            sa.select(model_timeline)
            .where(model_timeline.c.model_name == model_name)
            .order_by(model_timeline.c.effective_from)
        )
        return self.db.mappings(query)


class DecisionStore:
    """The ``model_decisions`` rows of the metrics DB ``db`` (dicts of the table's columns):
    every retrain's and promotion's outcome, refusals and rollbacks included."""

    def __init__(self, db: MetricsDB):
        self.db = db

    def record(self, model_name: str, decision_key: str, **values) -> None:
        """Record (or replace) the decision ``decision_key`` of ``model_name``; ``values`` are
        the table's columns (``kind``, ``day`` and ``reason`` at least)."""
        unknown = set(values) - DECISION_COLUMNS
        if unknown:
            raise ValueError(f"model_decisions has no column(s) {sorted(unknown)}")
        row = {c: values.get(c) for c in DECISION_COLUMNS}
        row.update(model_name=model_name, decision_key=decision_key, decided_at=utcnow())
        row["notify_attempts"] = values.get("notify_attempts") or 0
        with self.db.transaction() as conn:
            conn.execute(
                upsert_statement(self.db.engine(), model_decisions, [row], ("model_name", "decision_key"))
            )

    def all(self, model_name: str, *, episode_start: date | None = None) -> list[dict]:
        """The model's decisions (of one episode when given), oldest first."""
        query = sa.select(model_decisions).where(model_decisions.c.model_name == model_name)
        if episode_start is not None:
            query = query.where(model_decisions.c.episode_start == episode_start)
        with self.db.transaction() as conn:
            rows = conn.execute(query.order_by(model_decisions.c.decided_at, model_decisions.c.id))
            return [dict(r._mapping) for r in rows]

    def to_notify(self, model_name: str) -> list[dict]:
        query = sa.select(model_decisions).where(
            model_decisions.c.model_name == model_name, model_decisions.c.notify_status == "pending"
        )
        return self.db.mappings(query.order_by(model_decisions.c.id))

    def mark(self, ids: list[int], *, sent: bool, message_id: str | None = None, error: str | None = None):
        values = {"notify_attempts": model_decisions.c.notify_attempts + 1, "last_error": error}
        if sent:
            values.update(notify_status="sent", message_id=message_id)
        with self.db.transaction() as conn:
            conn.execute(sa.update(model_decisions).where(model_decisions.c.id.in_(ids)).values(**values))
