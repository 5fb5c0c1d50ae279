"""The metrics database: ``dummy_metrics`` (one row per model and day), the model timeline
(which model version is in effect from which day) and the alerts (one per rule and day).

SQLite by default (a file in ``MLOPS_HOME``), PostgreSQL when ``METRICS_DATABASE_URL`` says
so (``postgresql+psycopg2://…``); the resource gets the URL as a value. Monitoring writes
``dummy_metrics``, training and promotion write the timeline, alerting writes the alerts:
the store sits below all three. The project creates and migrates its tables itself: missing
tables are created and columns added by newer versions are added (``ensure_schema``), so
there is no manual SQL step. Writes are upserts in one transaction; an unreachable database
is retried a few times and then reported with the URL (password hidden) in the message.

Nothing waits forever: PostgreSQL sessions get a ``lock_timeout`` and a ``statement_timeout``
(SQLite a busy timeout), and a statement that runs into one fails with a message that says
which (and, for a lock, who holds it); its transaction is rolled back whole.
"""

from __future__ import annotations

import logging
import re
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
    # The feature columns Evidently found drifted, comma-separated ("" for none).
    sa.Column("drifted_columns", sa.Text()),
    sa.Column("share_missing_values", sa.Float()),
    sa.Column("n_rows", sa.Integer(), nullable=False),
    sa.Column("n_scored", sa.Integer(), nullable=False),
    sa.Column("drift_threshold", sa.Float()),
    sa.Column("report_path", sa.Text()),
    sa.Column("dagster_run_id", sa.String(64)),
    sa.Column("computed_at", sa.DateTime(), nullable=False),  # UTC
    # Model quality on the day's scored trips (minutes; mean_error = prediction - actual), and
    # rmse over the holdout RMSE of the model in effect (holdout_rmse). Null without scored rows.
    sa.Column("rmse", sa.Float()),
    sa.Column("mae", sa.Float()),
    sa.Column("mean_error", sa.Float()),
    sa.Column("rmse_ratio", sa.Float()),
    sa.Column("holdout_rmse", sa.Float()),
    # Evidently's method behind prediction_drift (the spec pins it: wasserstein by default).
    sa.Column("drift_method", sa.String(32)),
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
    sa.UniqueConstraint("model_name", "rule", "timestamp", name="uq_alerts_model_rule_timestamp"),
    sa.Index("ix_alerts_status", "model_name", "status"),
)

# Before alert rules, breaches of the drift threshold were kept in ``drift_alerts`` (unique per
# model and day). When ``alerts`` is created in a database that has it, its rows are copied as
# alerts of the ``prediction_drift`` rule, so no breach is emailed twice after an upgrade; the
# old table is left as it was.
LEGACY_DRIFT_ALERTS = "drift_alerts"
COPY_LEGACY_ALERTS = sa.text(f"""
    insert into alerts (model_name, rule, metric, op, threshold, for_days, timestamp, value,
                        model_version, retrain, detected_at, status, attempts, last_error,
                        sent_at, message_id)
    select model_name, 'prediction_drift', 'prediction_drift', '>', drift_threshold, 1, timestamp,
           prediction_drift, model_version, :retrain, detected_at, status, attempts, last_error,
           sent_at, message_id
    from {LEGACY_DRIFT_ALERTS}
""")


class MetricsDBError(RuntimeError):
    """The metrics database cannot be used; the message names it (without its password)."""


class MetricsDBTimeout(MetricsDBError):
    """A lock was not granted, or a statement not finished, within the resource's timeouts."""


# PostgreSQL's SQLSTATEs for a lock_timeout and for a cancelled statement (statement_timeout)
LOCK_NOT_AVAILABLE = "55P03"
QUERY_CANCELED = "57014"
# Table locks that make our writes wait (they conflict with ROW EXCLUSIVE; ACCESS EXCLUSIVE
# also makes reads wait). Weaker ones (SHARE UPDATE EXCLUSIVE: VACUUM, CREATE INDEX
# CONCURRENTLY) never block us.
BLOCKING_MODES = ("ShareLock", "ShareRowExclusiveLock", "ExclusiveLock", "AccessExclusiveLock")
# The table locks of sessions that write (or SELECT ... FOR UPDATE): with none of the above,
# one of them holds the row lock we waited for.
ROW_WRITER_MODES = ("RowExclusiveLock", "RowShareLock")
LOCK_HOLDERS = sa.text("""
    select c.relname, l.mode, l.pid, a.application_name, a.state,
           extract(epoch from now() - a.xact_start) as in_transaction
    from pg_locks l
    join pg_class c on c.oid = l.relation
    left join pg_stat_activity a on a.pid = l.pid
    where l.granted and l.pid <> pg_backend_pid()
      and l.database = (select oid from pg_database where datname = current_database())
      and c.relname in :tables and l.mode in :modes
    order by c.relname, l.pid
""").bindparams(sa.bindparam("tables", expanding=True), sa.bindparam("modes", expanding=True))


def utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def day_timestamp(day: str | date) -> datetime:
    d = date.fromisoformat(day) if isinstance(day, str) else day
    return datetime(d.year, d.month, d.day)


# A table's column names from the catalog alone. SQLAlchemy's get_columns also deparses column
# defaults with pg_get_expr, which takes a lock on the table: a lock held elsewhere on
# dummy_metrics would then stop every run at its first use of the metrics DB, not at the write.
PG_COLUMNS = sa.text(
    "select attname from pg_catalog.pg_attribute "
    "where attrelid = to_regclass(:table) and attnum > 0 and not attisdropped"
)


def column_names(engine: sa.Engine, inspector, table: str) -> set[str]:
    if engine.dialect.name == "postgresql":
        with engine.connect() as conn:
            return {r[0] for r in conn.execute(PG_COLUMNS, {"table": table})}
    return {c["name"] for c in inspector.get_columns(table)}


def ensure_schema(engine: sa.Engine) -> list[str]:
    """Create missing tables and add missing (nullable) columns; returns what it changed."""
    changes = []
    inspector = sa.inspect(engine)
    existing = set(inspector.get_table_names())
    for table in metadata.sorted_tables:
        if table.name not in existing:
            table.create(engine)
            changes.append(f"created table {table.name}")
            if table is alerts_table and LEGACY_DRIFT_ALERTS in existing:
                with engine.begin() as conn:
                    copied = conn.execute(COPY_LEGACY_ALERTS, {"retrain": True}).rowcount
                changes.append(f"copied {copied} row(s) of {LEGACY_DRIFT_ALERTS} into alerts")
            continue
        have = column_names(engine, inspector, table.name)
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


def statement_table(exc: sa.exc.StatementError) -> str | None:
    """The first of our tables a failed statement names (for error messages), if any: in its
    SQL, else in its parameters (the schema inspection passes table names as parameters)."""
    for text in (exc.statement, exc.params):
        match = re.search(rf"\b({'|'.join(metadata.tables)})\b", str(text or ""))
        if match:
            return match.group(1)
    return None


def first_line(exc: BaseException) -> str:
    return (str(getattr(exc, "orig", None) or exc).strip().splitlines() or [type(exc).__name__])[0]


# One engine (and one schema check) per database URL, timeouts and process. Dagster builds
# resources anew for every run and every sensor evaluation; without this each tick would pay
# for a new connection pool and an inspection of every table (about 40-80 ms instead of a few).
_ENGINES: dict[tuple, sa.Engine] = {}
_ENGINES_LOCK = threading.Lock()


class MetricsDB(dg.ConfigurableResource):
    """The metrics DB at ``url`` (SQLAlchemy; SQLite or PostgreSQL).

    Nothing waits forever. On PostgreSQL each session waits at most ``lock_timeout_seconds``
    for a lock (another session's ``LOCK TABLE``, ``ALTER TABLE``, ``VACUUM FULL``, or an open
    transaction writing the same rows) and runs a statement for at most
    ``statement_timeout_seconds`` (lock waits count, so keep it above the lock timeout); set as
    session settings when connecting. On SQLite a connection waits at most
    ``sqlite_busy_timeout_seconds`` for the database file's lock. 0 turns a timeout off.

    A timeout fails the statement and rolls its whole transaction back; it raises
    :class:`MetricsDBTimeout` at once, saying which timeout and, for a lock, who holds it. It
    is not retried here (``connect_attempts`` is for connecting): each attempt has waited the
    full timeout already. Callers retry it like an outage: the ``dummy_metrics`` asset's
    RetryPolicy (two step retries), the drift sensor's next tick.
    """

    url: str
    connect_attempts: int = 3
    retry_backoff_seconds: float = 1.0
    connect_timeout_seconds: int = 5
    lock_timeout_seconds: float = 10.0
    statement_timeout_seconds: float = 60.0
    sqlite_busy_timeout_seconds: float = 30.0

    _engine: sa.Engine | None = PrivateAttr(default=None)

    def describe(self) -> str:
        return redact_url(self.url)

    def _engine_key(self) -> tuple:
        return (
            self.url,
            self.connect_timeout_seconds,
            self.lock_timeout_seconds,
            self.statement_timeout_seconds,
            self.sqlite_busy_timeout_seconds,
        )

    def postgres_options(self, url_options: str | None = None) -> str:
        """libpq ``options``: the session's timeouts, then any ``options`` the URL has (which
        may override them)."""
        options = (
            f"-c lock_timeout={round(self.lock_timeout_seconds * 1000)}ms "
            f"-c statement_timeout={round(self.statement_timeout_seconds * 1000)}ms"
        )
        return f"{options} {url_options}" if url_options else options

    def engine(self) -> sa.Engine:
        if self._engine is None:
            url, key = self.url, self._engine_key()
            with _ENGINES_LOCK:
                cached = _ENGINES.get(key)
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
                kwargs["connect_args"] = {"timeout": self.sqlite_busy_timeout_seconds}
            elif parsed.get_backend_name() == "postgresql":
                url_options = parsed.query.get("options")
                kwargs["connect_args"] = {
                    "connect_timeout": self.connect_timeout_seconds,
                    "options": self.postgres_options(url_options if isinstance(url_options, str) else None),
                }
            try:
                engine = sa.create_engine(parsed, **kwargs)
            except ModuleNotFoundError as exc:
                raise MetricsDBError(
                    f"no driver for {redact_url(url)} ({exc}); PostgreSQL URLs must say postgresql+psycopg2://"
                ) from None
            self._with_retries(lambda: ensure_schema(engine), "create/migrate the tables of", engine)
            with _ENGINES_LOCK:
                self._engine = _ENGINES.setdefault(key, engine)
            if self._engine is not engine:
                engine.dispose()
        return self._engine

    def _with_retries(self, fn, doing: str, engine: sa.Engine):
        last: Exception | None = None
        for attempt in range(1, self.connect_attempts + 1):
            try:
                return fn()
            except sa.exc.OperationalError as exc:
                timeout = self._timeout_error(exc, engine)
                if timeout is not None:
                    raise timeout from None
                last = exc
                log.warning("metrics DB attempt %d/%d failed: %s", attempt, self.connect_attempts, exc.orig)
                if attempt < self.connect_attempts:
                    time.sleep(self.retry_backoff_seconds * 2 ** (attempt - 1))
        raise MetricsDBError(
            f"could not {doing} the metrics DB at {self.describe()} after "
            f"{self.connect_attempts} attempts: {first_line(last)}"
        ) from None

    def _timeout_error(self, exc: sa.exc.OperationalError, engine: sa.Engine) -> MetricsDBTimeout | None:
        """The clear error for a lock or statement timeout, None for any other failure."""
        orig = getattr(exc, "orig", None)
        code = getattr(orig, "pgcode", None)
        table = statement_table(exc)
        on = f" on {table}" if table else ""
        rolled_back = "its transaction was rolled back, nothing was written"
        if code == LOCK_NOT_AVAILABLE:
            return MetricsDBTimeout(
                f"the metrics DB at {self.describe()} did not grant a lock{on} within "
                f"{self.lock_timeout_seconds:g} s (lock_timeout): {self._lock_holders(engine, table)}; "
                f"{rolled_back}"
            )
        if code == QUERY_CANCELED and "statement timeout" in str(orig):
            return MetricsDBTimeout(
                f"the metrics DB at {self.describe()} cancelled a statement{on} after "
                f"{self.statement_timeout_seconds:g} s (statement_timeout); {rolled_back}"
            )
        if engine.dialect.name == "sqlite" and "database is locked" in str(orig):
            return MetricsDBTimeout(
                f"the metrics DB at {self.describe()} did not grant a lock{on} within "
                f"{self.sqlite_busy_timeout_seconds:g} s (SQLite busy timeout): another connection "
                f"holds the database file's lock; {rolled_back}"
            )
        return None

    def _lock_holders(self, engine: sa.Engine, table: str | None) -> str:
        """Who holds the lock we waited for, as the lock timeout's message says it: sessions
        holding a conflicting table lock, else sessions with open writes (row locks)."""
        tables = [table] if table else list(metadata.tables)
        try:
            with engine.connect() as conn:
                holders = conn.execute(
                    LOCK_HOLDERS, {"tables": tables, "modes": [*BLOCKING_MODES, *ROW_WRITER_MODES]}
                ).all()
        except sa.exc.SQLAlchemyError as exc:
            return f"another session holds a lock it needs (could not look up which: {first_line(exc)})"

        def session(h) -> str:
            return (
                f"pid {h.pid}"
                + (f", application {h.application_name!r}" if h.application_name else "")
                + (f", {h.state}" if h.state else "")
                + (f", in a transaction for {h.in_transaction:.0f} s" if h.in_transaction is not None else "")
            )

        blocking = [h for h in holders if h.mode in BLOCKING_MODES]
        if blocking:
            return "; ".join(
                f"another session holds {h.relname} ({h.mode}; {session(h)})" for h in blocking[:3]
            )
        if holders:
            return "; ".join(
                f"another session holds rows of {h.relname} (an open transaction writing to it; {session(h)})"
                for h in holders[:3]
            )
        return f"no other session holds a lock on {', '.join(tables)} any more (released since)"

    @contextmanager
    def transaction(self) -> Iterator[sa.Connection]:
        engine = self.engine()
        conn = self._with_retries(engine.connect, "connect to", engine)
        try:
            with conn.begin():
                yield conn
        except sa.exc.OperationalError as exc:
            timeout = self._timeout_error(exc, engine)
            if timeout is not None:
                raise timeout from None
            raise MetricsDBError(
                f"the metrics DB at {self.describe()} failed mid-transaction: {first_line(exc)}"
            ) from None
        finally:
            conn.close()

    # --- dummy_metrics --------------------------------------------------------------------
    def upsert_metrics(self, rows: Iterable[dict]) -> int:
        """Insert or replace the rows for (model_name, timestamp), all in one transaction.

        Every row gets every column any of them has (None where it has none): a multi-row
        INSERT takes its columns from the first row and would drop the others' extra values."""
        rows = list(rows)
        if not rows:
            return 0
        columns = list(dict.fromkeys(key for row in rows for key in row))
        rows = [{column: row.get(column) for column in columns} for row in rows]
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
        with self.transaction() as conn:
            count, newest = conn.execute(summary).one()
        return int(count), newest

    def qualifying_rows(
        self,
        model_name: str,
        rule,
        *,
        computed_since: datetime | None = None,
        start: datetime | None = None,
        end: datetime | None = None,
    ) -> list[dict]:
        """The days that count towards ``rule`` (an ``AlertRule``): its metric crosses its
        threshold and the day has at least ``min_rows`` trips; optionally only rows computed
        at or after ``computed_since``, or days in [start, end]. Only such rows are fetched,
        so a tick after a ten-year backfill costs what a tick after one day costs."""
        column = dummy_metrics.c[rule.metric]
        crosses = column > rule.threshold if rule.op == ">" else column < rule.threshold
        where = [dummy_metrics.c.model_name == model_name, crosses, dummy_metrics.c.n_rows >= rule.min_rows]
        if computed_since is not None:
            where.append(dummy_metrics.c.computed_at >= computed_since)
        if start is not None:
            where.append(dummy_metrics.c.timestamp >= start)
        if end is not None:
            where.append(dummy_metrics.c.timestamp <= end)
        query = (
            sa.select(
                dummy_metrics.c.timestamp,
                column.label("value"),
                dummy_metrics.c.model_version,
                dummy_metrics.c.n_rows,
                dummy_metrics.c.computed_at,
            )
            .where(*where)
            .order_by(dummy_metrics.c.timestamp)
        )
        with self.transaction() as conn:
            return [dict(r._mapping) for r in conn.execute(query)]

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

    # --- alerts ---------------------------------------------------------------------------
    def record_alerts(self, model_name: str, breaches: list[dict]) -> list[dict]:
        """Record breaches (dicts with the ``alerts`` columns rule, metric, op, threshold,
        for_days, timestamp, value, model_version, retrain) as pending alerts; returns the new.

        A (model, rule, day) already recorded is left alone: each breach is alerted once,
        whatever the number of ticks, restarts or re-materializations that see it again.
        """
        if not breaches:
            return []
        engine = self.engine()
        keys = {(b["rule"], b["timestamp"]) for b in breaches}
        with self.transaction() as conn:
            known = {
                (r.rule, r.timestamp)
                for r in conn.execute(
                    sa.select(alerts_table.c.rule, alerts_table.c.timestamp).where(
                        alerts_table.c.model_name == model_name,
                        alerts_table.c.timestamp.in_({day for _, day in keys}),
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
                insert = (postgresql if engine.dialect.name == "postgresql" else sqlite).insert(alerts_table)
                conn.execute(
                    insert.values(rows).on_conflict_do_nothing(
                        index_elements=["model_name", "rule", "timestamp"]
                    )
                )
        return new

    def alerts(self, model_name: str, status: str | None = None) -> list[dict]:
        query = sa.select(alerts_table).where(alerts_table.c.model_name == model_name)
        if status is not None:
            query = query.where(alerts_table.c.status == status)
        with self.transaction() as conn:
            return [
                dict(r._mapping)
                for r in conn.execute(query.order_by(alerts_table.c.timestamp, alerts_table.c.rule))
            ]

    def mark_alerts(
        self, ids: list[int], *, sent: bool, message_id: str | None = None, error: str | None = None
    ):
        values = {"attempts": alerts_table.c.attempts + 1, "last_error": error}
        if sent:
            values.update(status="sent", sent_at=utcnow(), message_id=message_id)
        with self.transaction() as conn:
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
        with self.transaction() as conn:
            row = conn.execute(query).first()
        return dict(row._mapping) if row else None
