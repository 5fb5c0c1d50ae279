"""Table ``dummy_metrics`` and its repository: one ``DailyMetrics`` row per model and day;
table ``segment_metrics`` beside it: the day's error per segment (``mlops_core.segments``).

The table's columns are ``mlops_core.daily_metrics.DailyMetrics``' fields (plus ``id``);
its schema in the database is Alembic's (``lib/storage/migrations``), and a test checks that
the two agree. Monitoring writes the rows (an upsert per run, in one transaction); the alert
sensor, the history chart, Grafana and the demo read them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from datetime import date, datetime

import sqlalchemy as sa

from mlops_assets.lib.storage.engine import ID, MetricsDB, metadata, upsert_statement
from mlops_core.daily_metrics import FIELDS, FLOAT_FIELDS, INT_FIELDS, TIME_FIELDS, DailyMetrics
from mlops_core.specs import AlertRule

KEY = ("model_name", "timestamp")


def _sql_type(field: dataclasses.Field) -> sa.types.TypeEngine:
    if field.name in TIME_FIELDS:
        return sa.DateTime()
    if field.name in INT_FIELDS:
        return sa.Integer()
    if field.name in FLOAT_FIELDS:
        return sa.Float()
    length = field.metadata["length"]
    return sa.String(length) if length else sa.Text()


dummy_metrics = sa.Table(
    "dummy_metrics",
    metadata,
    sa.Column("id", ID, primary_key=True, autoincrement=True),
    *(
        sa.Column(f.name, _sql_type(f), nullable=f.metadata["nullable"], doc=f.metadata["doc"])
        for f in FIELDS
    ),
    # One row per model and day; the index behind it also serves "latest row per model"
    # (WHERE model_name = ? ORDER BY timestamp DESC LIMIT 1 is a backward index scan).
    sa.UniqueConstraint(*KEY, name="uq_dummy_metrics_model_timestamp"),
    sa.Index("ix_dummy_metrics_model_computed_at", "model_name", "computed_at"),
)


class DailyMetricsStore:
    """The ``dummy_metrics`` rows of the metrics DB ``db``."""

    def __init__(self, db: MetricsDB):
        self.db = db

    def upsert(self, rows: Iterable[DailyMetrics], segments: dict[datetime, list[dict]] | None = None) -> int:
        """Insert or replace the rows for (model_name, timestamp), all in one transaction; with
        ``segments`` (day -> its segment rows), the days' ``segment_metrics`` in the same one."""
        values = [row.as_dict() for row in rows]
        if not values:
            return 0
        with self.db.transaction() as conn:
            conn.execute(upsert_statement(self.db.engine(), dummy_metrics, values, KEY))
            if segments is not None:
                SegmentMetricsStore(self.db).replace_days(conn, values[0]["model_name"], segments)
        return len(values)

    def rows(
        self, model_name: str, start: datetime | None = None, end: datetime | None = None
    ) -> list[DailyMetrics]:
        """The model's rows in day order, optionally only days in [start, end)."""
        query = sa.select(dummy_metrics).where(dummy_metrics.c.model_name == model_name)
        if start is not None:
            query = query.where(dummy_metrics.c.timestamp >= start)
        if end is not None:
            query = query.where(dummy_metrics.c.timestamp < end)
        with self.db.transaction() as conn:
            result = conn.execute(query.order_by(dummy_metrics.c.timestamp))
            return [DailyMetrics.from_mapping(dict(r._mapping)) for r in result]

    def latest(self, model_name: str) -> DailyMetrics | None:
        query = (
            sa.select(dummy_metrics)
            .where(dummy_metrics.c.model_name == model_name)
            .order_by(dummy_metrics.c.timestamp.desc())
            .limit(1)
        )
        with self.db.transaction() as conn:
            row = conn.execute(query).first()
        return DailyMetrics.from_mapping(dict(row._mapping)) if row else None

    def last_monitored_day(self, model_name: str) -> date | None:
        row = self.latest(model_name)
        return row.timestamp.date() if row else None

    def scored_days(self, model_name: str, since: datetime) -> dict[date, int]:
        """Each monitored day from ``since`` on and the trips the model scored on it."""
        query = (
            sa.select(dummy_metrics.c.timestamp, dummy_metrics.c.n_scored)
            .where(dummy_metrics.c.model_name == model_name, dummy_metrics.c.timestamp >= since)
            .order_by(dummy_metrics.c.timestamp)
        )
        with self.db.transaction() as conn:
            return {r.timestamp.date(): int(r.n_scored) for r in conn.execute(query)}

    def computed_since(
        self, model_name: str, since: datetime | None, *, strictly_after: bool = False
    ) -> tuple[int, datetime | None]:
        """How many rows were computed (inserted or re-computed) at or after ``since`` (UTC;
        after it with ``strictly_after``), and the newest ``computed_at``: a range scan of the
        (model_name, computed_at) index."""
        where = [dummy_metrics.c.model_name == model_name]
        if since is not None:
            column = dummy_metrics.c.computed_at
            where.append(column > since if strictly_after else column >= since)
        summary = sa.select(sa.func.count(), sa.func.max(dummy_metrics.c.computed_at)).where(*where)
        with self.db.transaction() as conn:
            count, newest = conn.execute(summary).one()
        return int(count), newest

    def qualifying(
        self,
        model_name: str,
        rule: AlertRule,
        *,
        computed_since: datetime | None = None,
        start: datetime | None = None,
        end: datetime | None = None,
    ) -> list[DailyMetrics]:
        """The days that count towards ``rule``: its metric crosses its threshold (the rule's
        own comparison, as SQL) and the day has at least ``min_rows`` trips; optionally only
        rows computed at or after ``computed_since``, or days in [start, end]. Only such rows
        are fetched, so a tick after a ten-year backfill costs what a tick after one day costs."""
        where = [
            dummy_metrics.c.model_name == model_name,
            rule.compare(dummy_metrics.c[rule.metric]),
            dummy_metrics.c.n_rows >= rule.min_rows,
        ]
        if computed_since is not None:
            where.append(dummy_metrics.c.computed_at >= computed_since)
        if start is not None:
            where.append(dummy_metrics.c.timestamp >= start)
        if end is not None:
            where.append(dummy_metrics.c.timestamp <= end)
        query = sa.select(dummy_metrics).where(*where).order_by(dummy_metrics.c.timestamp)
        with self.db.transaction() as conn:
            return [DailyMetrics.from_mapping(dict(r._mapping)) for r in conn.execute(query)]


SEGMENT_KEY = ("model_name", "timestamp", "dimension", "segment")
segment_metrics = sa.Table(
    "segment_metrics",
    metadata,
    sa.Column("id", ID, primary_key=True, autoincrement=True),
    sa.Column("model_name", sa.String(100), nullable=False),
    sa.Column("timestamp", sa.DateTime(), nullable=False, doc="the monitored day (00:00, New York)"),
    sa.Column("dimension", sa.String(32), nullable=False, doc="pickup_borough, hour_band, ..."),
    sa.Column("segment", sa.String(64), nullable=False, doc="Queens, evening rush (16-20h), ..."),
    sa.Column("model_version", sa.String(50), doc="the model version in effect that day"),
    sa.Column("n_rows", sa.Integer(), nullable=False, doc="the segment's trips that day"),
    sa.Column("n_scored", sa.Integer(), nullable=False, doc="of which the model scored"),
    sa.Column("rmse", sa.Float(), doc="RMSE over the segment's scored trips, minutes"),
    sa.Column("mae", sa.Float()),
    sa.Column("mean_error", sa.Float(), doc="mean of prediction minus actual, minutes"),
    sa.Column("holdout_rmse", sa.Float(), doc="the model's RMSE on this segment of its holdout"),
    sa.Column("error_share", sa.Float(), doc="the segment's share of the day's squared error"),
    sa.Column("excess_share", sa.Float(), doc="its share of the squared error above the holdout's"),
    sa.Column("computed_at", sa.DateTime(), nullable=False),
    sa.UniqueConstraint(*SEGMENT_KEY, name="uq_segment_metrics_key"),
)
SEGMENT_COLUMNS = tuple(c.name for c in segment_metrics.columns if c.name != "id")


class SegmentMetricsStore:
    """The ``segment_metrics`` rows of the metrics DB ``db``: per model, day and segment."""

    def __init__(self, db: MetricsDB):
        self.db = db

    def replace_days(self, conn: sa.Connection, model_name: str, days: dict[datetime, list[dict]]) -> int:
        """The segment rows of each of ``days`` replace whatever the model had for that day
        (in the caller's transaction): re-materializing a day leaves exactly its rows, and a
        segment that had trips before and has none now is not left behind."""
        if not days:
            return 0
        conn.execute(
            sa.delete(segment_metrics).where(
                segment_metrics.c.model_name == model_name, segment_metrics.c.timestamp.in_(list(days))
            )
        )
        values = [
            {c: row.get(c) for c in SEGMENT_COLUMNS} | {"model_name": model_name, "timestamp": day}
            for day, rows in days.items()
            for row in rows
        ]
        if values:
            conn.execute(sa.insert(segment_metrics), values)
        return len(values)

    def rows(self, model_name: str, start: datetime | None = None, end: datetime | None = None) -> list[dict]:
        """The model's segment rows, by day, dimension and segment; optionally days in [start, end)."""
        query = sa.select(segment_metrics).where(segment_metrics.c.model_name == model_name)
        if start is not None:
            query = query.where(segment_metrics.c.timestamp >= start)
        if end is not None:
            query = query.where(segment_metrics.c.timestamp < end)
        order = (segment_metrics.c.timestamp, segment_metrics.c.dimension, segment_metrics.c.segment)
        return self.db.mappings(query.order_by(*order))
