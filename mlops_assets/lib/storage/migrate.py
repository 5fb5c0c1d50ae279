"""The metrics database's schema: Alembic revisions in ``migrations/versions``, applied when a
process first uses the database (``MetricsDB.engine``), so there is no manual SQL step.

The revision history is kept in its own table (``metrics_db_version``, not Alembic's default
``alembic_version``, which MLflow and Dagster use for their own schemas and which may share
the database). The first revision, ``0001_baseline``, adopts what earlier releases created
without Alembic (their tables are left in place, missing columns, indexes and constraints
are added, and the old ``drift_alerts`` rows are copied into ``alerts``), or creates the
tables in an empty database; later revisions are ordinary Alembic operations.

One process at a time: on PostgreSQL the upgrade holds a transaction-scoped advisory lock
(and DDL is transactional, so it is all or nothing); on a SQLite file, a lock file beside it.
``migrate`` returns what it changed (one line each), ``[]`` when the schema was at the head.

    alembic -x url=sqlite:///.mlops/metrics.db -c mlops_assets/lib/storage/alembic.ini history
"""

from __future__ import annotations

import contextlib
import fcntl
from collections.abc import Iterator
from functools import cache
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

MIGRATIONS = Path(__file__).with_name("migrations")
VERSION_TABLE = "metrics_db_version"
# pg_advisory_xact_lock's key: any constant of our own ("mlopsmig" as a 64-bit integer).
ADVISORY_LOCK = int.from_bytes(b"mlopsmig", "big") & 0x7FFFFFFFFFFFFFFF


def alembic_config(connection: sa.Connection | None = None, changes: list[str] | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["connection"] = connection
    cfg.attributes["changes"] = changes if changes is not None else []
    return cfg


@cache
def head() -> str:
    """The newest revision in ``migrations/versions``."""
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def current(conn: sa.Connection) -> str | None:
    """The revision the database is at (None: never migrated by Alembic)."""
    return MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE}).get_current_revision()


@contextlib.contextmanager
def _one_at_a_time(engine: sa.Engine) -> Iterator[sa.Connection]:
    """A transaction that no other process's migration runs beside."""
    if engine.dialect.name == "postgresql":
        with engine.begin() as conn:
            conn.execute(sa.select(sa.func.pg_advisory_xact_lock(ADVISORY_LOCK)))
            yield conn
        return
    database = engine.url.database
    if engine.dialect.name == "sqlite" and database and database != ":memory:":
        with open(f"{database}.migrate-lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            with engine.begin() as conn:
                yield conn
        return
    with engine.begin() as conn:
        yield conn


def migrate(engine: sa.Engine) -> list[str]:
    """Bring the database to the newest revision; returns what changed ([] at the head)."""
    with engine.connect() as conn:
        if current(conn) == head():
            return []
    changes: list[str] = []
    with _one_at_a_time(engine) as conn:
        if current(conn) == head():  # another process did it while we waited
            return []
        command.upgrade(alembic_config(conn, changes), "head")
    return changes
