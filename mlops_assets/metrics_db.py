"""The metrics database: ``dummy_metrics`` (one row per model and day), the model timeline
(which model version is in effect from which day) and the drift alerts.

SQLite by default (a file in ``MLOPS_HOME``), PostgreSQL when ``METRICS_DATABASE_URL`` says
so (``postgresql+psycopg2://…``); the resource gets the URL as a value. Monitoring writes
``dummy_metrics``, training and promotion write the timeline, alerting writes the alerts:
the store sits below all three. The project creates and migrates its tables itself: missing
tables are created and columns added by newer versions are added (``ensure_schema``), so
there is no manual SQL step. Writes are upserts in one transaction; an unreachable database
is retried a few times and then reported with the URL (password hidden) in the message.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, date, datetime
from pathlib import Path

import dagster as dg
import sqlalchemy as sa
from pydantic import PrivateAttr
from sqlalchemy.dialects import postgresql, sqlite

from mlops_core.text import redact_url

log = logging.getLogger(__name__)

metadata = sa.MetaData()
ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")  # SQLite autoincrements INTEGER only

dummy_metrics = sa.Table(
    "dummy_metrics",
    metadata,
    sa.Column("id", ID, primary_key=True, autoincrement=True),
    sa.Column("model_name", sa.String(100), nullable=False),
    # The monitored day, 00:00 New York wall clock (the TLC's clock), as the original design.
    sa.Column("timestamp", sa.DateTime(), nullable=False),
    sa.Column("model_version", sa.String(50)),
    sa.Column("prediction_drift", sa.Float()),
    sa.Column("num_drifted_columns", sa.Integer()),
    sa.Column("share_missing_values", sa.Float()),
    sa.Column("n_rows", sa.Integer(), nullable=False),
    sa.Column("n_scored", sa.Integer(), nullable=False),
    sa.Column("drift_threshold", sa.Float()),
    sa.Column("report_path", sa.Text()),
    sa.Column("dagster_run_id", sa.String(64)),
    sa.Column("computed_at", sa.DateTime(), nullable=False),  # UTC
    # One row per model and day; the index behind it also serves "latest row per model"
    # (WHERE model_name = ? ORDER BY timestamp DESC LIMIT 1 is a backward index scan).
    sa.UniqueConstraint("model_name", "timestamp", name="uq_dummy_metrics_model_timestamp"),
    sa.Index("ix_dummy_metrics_model_computed_at", "model_name", "computed_at"),
)

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

drift_alerts = sa.Table(
    "drift_alerts",
    metadata,
    sa.Column("id", ID, primary_key=True, autoincrement=True),
    sa.Column("model_name", sa.String(100), nullable=False),
    sa.Column("timestamp", sa.DateTime(), nullable=False),  # the breaching day (dummy_metrics)
    sa.Column("prediction_drift", sa.Float(), nullable=False),
    sa.Column("drift_threshold", sa.Float(), nullable=False),
    sa.Column("model_version", sa.String(50)),
    sa.Column("detected_at", sa.DateTime(), nullable=False),  # UTC
    sa.Column("status", sa.String(16), nullable=False),  # pending | sent
    sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"),
    sa.Column("last_error", sa.Text()),
    sa.Column("sent_at", sa.DateTime()),
    sa.Column("message_id", sa.String(255)),
    sa.UniqueConstraint("model_name", "timestamp", name="uq_drift_alerts_model_timestamp"),
    sa.Index("ix_drift_alerts_status", "model_name", "status"),
)


class MetricsDBError(RuntimeError):
    """The metrics database cannot be used; the message names it (without its password)."""


def utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def day_timestamp(day: str | date) -> datetime:
    d = date.fromisoformat(day) if isinstance(day, str) else day
    return datetime(d.year, d.month, d.day)


def ensure_schema(engine: sa.Engine) -> list[str]:
    """Create missing tables and add missing (nullable) columns; returns what it changed."""
    changes = []
    inspector = sa.inspect(engine)
    existing = set(inspector.get_table_names())
    for table in metadata.sorted_tables:
        if table.name not in existing:
            table.create(engine)
            changes.append(f"created table {table.name}")
            continue
        have = {c["name"] for c in inspector.get_columns(table.name)}
        for column in table.columns:
            if column.name in have:
                continue
            ddl = sa.schema.CreateColumn(column).compile(dialect=engine.dialect)
            with engine.begin() as conn:
                conn.execute(sa.text(f'ALTER TABLE "{table.name}" ADD COLUMN {ddl}'))
            changes.append(f"added column {table.name}.{column.name}")
    return changes


def upsert_statement(engine: sa.Engine, table: sa.Table, rows: list[dict], keys: Sequence[str]):
    dialect = engine.dialect.name
    if dialect == "postgresql":
        stmt = postgresql.insert(table).values(rows)
    elif dialect == "sqlite":
        stmt = sqlite.insert(table).values(rows)
    else:
        raise MetricsDBError(f"metrics DB dialect {dialect!r} is not supported (use SQLite or PostgreSQL)")
    updates = {c.name: stmt.excluded[c.name] for c in table.columns if c.name not in ("id", *keys)}
    return stmt.on_conflict_do_update(index_elements=list(keys), set_=updates)


# One engine (and one schema check) per database URL and process. Dagster builds resources
# anew for every run and every sensor evaluation; without this each tick would pay for a new
# connection pool and an inspection of every table (about 40-80 ms instead of a few).
_ENGINES: dict[str, sa.Engine] = {}
_ENGINES_LOCK = threading.Lock()


class MetricsDB(dg.ConfigurableResource):
    """The metrics DB at ``url`` (SQLAlchemy; SQLite or PostgreSQL)."""

    url: str
    connect_attempts: int = 3
    retry_backoff_seconds: float = 1.0
    connect_timeout_seconds: int = 5

    _engine: sa.Engine | None = PrivateAttr(default=None)

    def database_url(self) -> str:
        return self.url

    def describe(self) -> str:
        return redact_url(self.database_url())

    def engine(self) -> sa.Engine:
        if self._engine is None:
            url = self.database_url()
            with _ENGINES_LOCK:
                cached = _ENGINES.get(url)
            if cached is not None:
                self._engine = cached
                return cached
            try:
                parsed = sa.make_url(url)
            except sa.exc.ArgumentError as exc:
                raise MetricsDBError(f"METRICS_DATABASE_URL is not a database URL: {exc}") from None
            kwargs: dict = {"pool_pre_ping": True}
            if parsed.get_backend_name() == "sqlite":
                if parsed.database and parsed.database != ":memory:":
                    Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
                kwargs["connect_args"] = {"timeout": 30}
            elif parsed.get_backend_name() == "postgresql":
                kwargs["connect_args"] = {"connect_timeout": self.connect_timeout_seconds}
            try:
                engine = sa.create_engine(parsed, **kwargs)
            except ModuleNotFoundError as exc:
                raise MetricsDBError(
                    f"no driver for {redact_url(url)} ({exc}); PostgreSQL URLs must say postgresql+psycopg2://"
                ) from None
            self._with_retries(lambda: ensure_schema(engine), "create/migrate the tables of")
            with _ENGINES_LOCK:
                self._engine = _ENGINES.setdefault(url, engine)
            if self._engine is not engine:
                engine.dispose()
        return self._engine

    def _with_retries(self, fn, doing: str):
        last: Exception | None = None
        for attempt in range(1, self.connect_attempts + 1):
            try:
                return fn()
            except sa.exc.OperationalError as exc:
                last = exc
                log.warning("metrics DB attempt %d/%d failed: %s", attempt, self.connect_attempts, exc.orig)
                if attempt < self.connect_attempts:
                    time.sleep(self.retry_backoff_seconds * 2 ** (attempt - 1))
        reason = str(getattr(last, "orig", last)).strip().splitlines()[0]
        raise MetricsDBError(
            f"could not {doing} the metrics DB at {self.describe()} after "
            f"{self.connect_attempts} attempts: {reason}"
        ) from None

    @contextmanager
    def transaction(self) -> Iterator[sa.Connection]:
        engine = self.engine()
        conn = self._with_retries(engine.connect, "connect to")
        try:
            with conn.begin():
                yield conn
        except sa.exc.OperationalError as exc:
            reason = str(getattr(exc, "orig", exc)).strip().splitlines()[0]
            raise MetricsDBError(
                f"the metrics DB at {self.describe()} failed mid-transaction: {reason}"
            ) from None
        finally:
            conn.close()

    # --- dummy_metrics --------------------------------------------------------------------
    def upsert_metrics(self, rows: Iterable[dict]) -> int:
        """Insert or replace the rows for (model_name, timestamp), all in one transaction."""
        rows = list(rows)
        if not rows:
            return 0
        engine = self.engine()
        with self.transaction() as conn:
            conn.execute(upsert_statement(engine, dummy_metrics, rows, ("model_name", "timestamp")))
        return len(rows)

    def metrics(
        self, model_name: str, start: datetime | None = None, end: datetime | None = None
    ) -> list[dict]:
        query = sa.select(dummy_metrics).where(dummy_metrics.c.model_name == model_name)
        if start is not None:
            query = query.where(dummy_metrics.c.timestamp >= start)
        if end is not None:
            query = query.where(dummy_metrics.c.timestamp < end)
        with self.transaction() as conn:
            return [dict(r._mapping) for r in conn.execute(query.order_by(dummy_metrics.c.timestamp))]

    def latest_metric(self, model_name: str) -> dict | None:
        query = (
            sa.select(dummy_metrics)
            .where(dummy_metrics.c.model_name == model_name)
            .order_by(dummy_metrics.c.timestamp.desc())
            .limit(1)
        )
        with self.transaction() as conn:
            row = conn.execute(query).first()
        return dict(row._mapping) if row else None

    def breaches_computed_since(
        self, model_name: str, since: datetime | None, threshold: float
    ) -> tuple[int, datetime | None, list[dict]]:
        """Rows computed (inserted or re-computed) at or after ``since`` (UTC): how many, the
        newest ``computed_at``, and those whose ``prediction_drift`` exceeds ``threshold``.

        Two range scans of the (model_name, computed_at) index; only breaching rows are
        fetched, so a tick after a ten-year backfill costs what a tick after one day costs.
        """
        where = [dummy_metrics.c.model_name == model_name]
        if since is not None:
            where.append(dummy_metrics.c.computed_at >= since)
        summary = sa.select(sa.func.count(), sa.func.max(dummy_metrics.c.computed_at)).where(*where)
        breaching = (
            sa.select(
                dummy_metrics.c.timestamp,
                dummy_metrics.c.prediction_drift,
                dummy_metrics.c.model_version,
                dummy_metrics.c.computed_at,
            )
            .where(*where, dummy_metrics.c.prediction_drift > threshold)
            .order_by(dummy_metrics.c.timestamp)
        )
        with self.transaction() as conn:
            count, newest = conn.execute(summary).one()
            rows = [dict(r._mapping) for r in conn.execute(breaching)]
        return int(count), newest, rows

    def last_monitored_day(self, model_name: str) -> date | None:
        row = self.latest_metric(model_name)
        return row["timestamp"].date() if row else None

    # --- model timeline -------------------------------------------------------------------
    def record_in_effect(
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
        row = {
            "window_end": window_end,
            "model_name": model_name,
            "model_version": str(version),
            "effective_from": effective_from,
            "recorded_at": utcnow(),
            "reason": reason,
            "holdout_rmse": holdout_rmse,
            "previous_version": previous_version,
            "previous_rmse": previous_rmse,
        }
        engine = self.engine()
        with self.transaction() as conn:
            conn.execute(upsert_statement(engine, model_timeline, [row], ("model_name", "effective_from")))

    def timeline(self, model_name: str) -> list[dict]:
        query = (
            sa.select(model_timeline)
            .where(model_timeline.c.model_name == model_name)
            .order_by(model_timeline.c.effective_from)
        )
        with self.transaction() as conn:
            return [dict(r._mapping) for r in conn.execute(query)]

    @staticmethod
    def in_effect_on(timeline: list[dict], day: date) -> dict | None:
        """The timeline entry in effect on ``day``: the latest ``effective_from`` <= day."""
        current = None
        for entry in timeline:  # ordered by effective_from
            if entry["effective_from"] <= day:
                current = entry
        return current

    # --- drift alerts ---------------------------------------------------------------------
    def record_breaches(self, model_name: str, breaches: list[dict], threshold: float) -> list[datetime]:
        """Record breaching rows as pending alerts; returns the days that were new.

        A (model, day) already recorded is left alone: each breach is alerted once, whatever
        the number of ticks, restarts or re-materializations that see it again.
        """
        if not breaches:
            return []
        engine = self.engine()
        days = [b["timestamp"] for b in breaches]
        with self.transaction() as conn:
            known = {
                r[0]
                for r in conn.execute(
                    sa.select(drift_alerts.c.timestamp).where(
                        drift_alerts.c.model_name == model_name, drift_alerts.c.timestamp.in_(days)
                    )
                )
            }
            new = [b for b in breaches if b["timestamp"] not in known]
            if new:
                rows = [
                    {
                        "model_name": model_name,
                        "timestamp": b["timestamp"],
                        "prediction_drift": b["prediction_drift"],
                        "drift_threshold": threshold,
                        "model_version": b.get("model_version"),
                        "detected_at": utcnow(),
                        "status": "pending",
                        "attempts": 0,
                    }
                    for b in new
                ]
                insert = (postgresql if engine.dialect.name == "postgresql" else sqlite).insert(drift_alerts)
                conn.execute(
                    insert.values(rows).on_conflict_do_nothing(index_elements=["model_name", "timestamp"])
                )
        return [b["timestamp"] for b in new]

    def alerts(self, model_name: str, status: str | None = None) -> list[dict]:
        query = sa.select(drift_alerts).where(drift_alerts.c.model_name == model_name)
        if status is not None:
            query = query.where(drift_alerts.c.status == status)
        with self.transaction() as conn:
            return [dict(r._mapping) for r in conn.execute(query.order_by(drift_alerts.c.timestamp))]

    def mark_alerts(
        self, ids: list[int], *, sent: bool, message_id: str | None = None, error: str | None = None
    ):
        values = {"attempts": drift_alerts.c.attempts + 1, "last_error": error}
        if sent:
            values.update(status="sent", sent_at=utcnow(), message_id=message_id)
        with self.transaction() as conn:
            conn.execute(sa.update(drift_alerts).where(drift_alerts.c.id.in_(ids)).values(**values))

    def latest_breach_day(self, model_name: str) -> datetime | None:
        with self.transaction() as conn:
            return conn.execute(
                sa.select(sa.func.max(drift_alerts.c.timestamp)).where(
                    drift_alerts.c.model_name == model_name
                )
            ).scalar()
