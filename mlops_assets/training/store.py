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
    sa.UniqueConstraint("model_name", "effective_from", name="uq_model_timeline_model_day"),
)


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
    ) -> None:
        """``version`` is in effect from ``effective_from`` (replacing an entry of that day)."""
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
        with self.db.transaction() as conn:
            return [dict(r._mapping) for r in conn.execute(query)]
