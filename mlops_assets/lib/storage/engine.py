"""The metrics database's engine: one per URL and process, with bounded waits and clear errors.

``MetricsDB`` is the code location's ``metrics_db`` resource: a SQLAlchemy engine (SQLite by
default, a file in ``MLOPS_HOME``; PostgreSQL when ``METRICS_DATABASE_URL`` says so,
``postgresql+psycopg2://…``), its transactions, and the translation of failures into errors
that say what happened. It knows no table: each domain keeps its tables and the queries on
them in its own ``store.py`` (a repository over this engine), and the schema is Alembic's
(``lib/storage/migrate.py``), brought to the newest revision when a process first uses the
database, so there is no manual SQL step.

Nothing waits forever: PostgreSQL sessions get a ``lock_timeout`` and a ``statement_timeout``
(SQLite a busy timeout), and a statement that runs into one fails with a message that says
which (and, for a lock, who holds it); its transaction is rolled back whole. An unreachable
database is retried a few times and then reported with the URL (password hidden).
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, date, datetime
from pathlib import Path

import dagster as dg
import sqlalchemy as sa
from pydantic import PrivateAttr
from sqlalchemy.dialects import postgresql, sqlite

from mlops_core.text import redact_url

log = logging.getLogger(__name__)

# Every table of the metrics DB registers here (each domain's store.py defines its own);
# Alembic's revisions are the schema, and a test compares the two.
metadata = sa.MetaData()
ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")  # SQLite autoincrements INTEGER only


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


def insert(engine: sa.Engine, table: sa.Table):
    """The dialect's INSERT (with ON CONFLICT), for SQLite and PostgreSQL alike."""
    dialect = engine.dialect.name
    if dialect == "postgresql":
        return postgresql.insert(table)
    if dialect == "sqlite":
        return sqlite.insert(table)
    raise MetricsDBError(f"metrics DB dialect {dialect!r} is not supported (use SQLite or PostgreSQL)")


def upsert_statement(engine: sa.Engine, table: sa.Table, rows: list[dict], keys: Sequence[str]):
    """INSERT ``rows``, replacing every other column of a row whose ``keys`` exist already."""
    stmt = insert(engine, table).values(rows)
    updates = {c.name: stmt.excluded[c.name] for c in table.columns if c.name not in ("id", *keys)}
    return stmt.on_conflict_do_update(index_elements=list(keys), set_=updates)


def insert_new(engine: sa.Engine, table: sa.Table, rows: list[dict], keys: Sequence[str]):
    """INSERT ``rows``, leaving alone a row whose ``keys`` exist already."""
    return insert(engine, table).values(rows).on_conflict_do_nothing(index_elements=list(keys))


def statement_table(exc: sa.exc.StatementError) -> str | None:
    """The first of our tables a failed statement names (for error messages), if any: in its
    SQL, else in its parameters (the schema inspection passes table names as parameters)."""
    names = sorted(metadata.tables, key=len, reverse=True)
    if not names:
        return None
    for text in (exc.statement, exc.params):
        match = re.search(rf"\b({'|'.join(map(re.escape, names))})\b", str(text or ""))
        if match:
            return match.group(1)
    return None


def first_line(exc: BaseException) -> str:
    return (str(getattr(exc, "orig", None) or exc).strip().splitlines() or [type(exc).__name__])[0]


# One engine (and one schema upgrade) per database URL, timeouts and process. Dagster builds
# resources anew for every run and every sensor evaluation; without this each tick would pay
# for a new connection pool and a look at the schema's revision.
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
    RetryPolicy (two step retries), the alert sensor's next tick.
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
        """The engine, its schema upgraded to the newest revision on first use in a process."""
        if self._engine is None:
            url, key = self.url, self._engine_key()
            with _ENGINES_LOCK:
                cached = _ENGINES.get(key)
            if cached is not None:
                self._engine = cached
                return cached
            engine = self._create_engine(url)
            from mlops_assets.lib.storage.migrate import migrate

            self._with_retries(lambda: migrate(engine), "create/migrate the tables of", engine)
            with _ENGINES_LOCK:
                self._engine = _ENGINES.setdefault(key, engine)
            if self._engine is not engine:
                engine.dispose()
        return self._engine

    def _create_engine(self, url: str) -> sa.Engine:
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
            return sa.create_engine(parsed, **kwargs)
        except ModuleNotFoundError as exc:
            raise MetricsDBError(
                f"no driver for {redact_url(url)} ({exc}); PostgreSQL URLs must say postgresql+psycopg2://"
            ) from None

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

    def mappings(self, query: sa.Select) -> list[dict]:
        """The rows of ``query`` as dicts of their columns, read in one transaction."""
        with self.transaction() as conn:
            return [dict(r._mapping) for r in conn.execute(query)]

    @contextmanager
    def transaction(self) -> Iterator[sa.Connection]:
        """One transaction: committed when the block ends, rolled back whole on any error."""
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
