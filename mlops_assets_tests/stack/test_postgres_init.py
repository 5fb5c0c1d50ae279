"""config/postgres/init-databases.sh: the stack's databases, roles and privileges.

Runs the real script (what the postgres image runs from /docker-entrypoint-initdb.d on an
empty volume) against the real PostgreSQL 15 server, with unique database and role names,
and checks what each component's role may do: own and create its tables, not reach another
component's database; Grafana's role reads the metrics tables (also those created later, by
the real MetricsDB) and cannot write. Nothing is replaced, except that the test server trusts
loopback connections, so the roles' passwords are set but not checked.
"""

from __future__ import annotations

import os
import subprocess

import pytest
import sqlalchemy as sa

from mlops_assets.lib.storage.engine import MetricsDB
from mlops_assets_tests.conftest import PG_ADMIN_URL
from mlops_assets_tests.stack.support import INIT_SCRIPT, StackDatabases

pytestmark = pytest.mark.postgres


def connect(db: StackDatabases, database: str, user: str) -> sa.Engine:
    return sa.create_engine(db.url(database, user), isolation_level="AUTOCOMMIT")


def test_each_component_owns_its_database_and_only_that(stack_db):
    admin = sa.create_engine(PG_ADMIN_URL)
    with admin.connect() as conn:
        owners = dict(
            conn.execute(
                sa.text(
                    "select datname, pg_get_userbyid(datdba) from pg_database where datname = any(:names)"
                ),
                {"names": [stack_db.names[k] for k in ("METRICS_DB", "DAGSTER_PG_DB", "MLFLOW_DB")]},
            ).all()
        )
        can_login = dict(
            conn.execute(
                sa.text("select rolname, rolcanlogin and not rolsuper from pg_roles where rolname = any(:r)"),
                {"r": [stack_db.names[k] for k in ("METRICS_DB_USER", "GRAFANA_DB_USER")]},
            ).all()
        )
    admin.dispose()
    assert owners == {
        stack_db.names["METRICS_DB"]: stack_db.names["METRICS_DB_USER"],
        stack_db.names["DAGSTER_PG_DB"]: stack_db.names["DAGSTER_PG_USERNAME"],
        stack_db.names["MLFLOW_DB"]: stack_db.names["MLFLOW_DB_USER"],
    }
    assert set(can_login.values()) == {True}  # login roles, not superusers
    # Each owner may create tables in its database (PostgreSQL 15 no longer lets PUBLIC create).
    for database, user in (
        ("METRICS_DB", "METRICS_DB_USER"),
        ("DAGSTER_PG_DB", "DAGSTER_PG_USERNAME"),
        ("MLFLOW_DB", "MLFLOW_DB_USER"),
    ):
        engine = connect(stack_db, database, user)
        with engine.connect() as conn:
            conn.execute(sa.text("create table owned_here (x int)"))
            conn.execute(sa.text("drop table owned_here"))
        engine.dispose()
    # ...and none may connect to another component's database.
    for database, user in (
        ("METRICS_DB", "DAGSTER_PG_USERNAME"),
        ("DAGSTER_PG_DB", "METRICS_DB_USER"),
        ("MLFLOW_DB", "GRAFANA_DB_USER"),
        ("DAGSTER_PG_DB", "GRAFANA_DB_USER"),
    ):
        engine = connect(stack_db, database, user)
        with pytest.raises(sa.exc.OperationalError, match="permission denied for database"):
            engine.connect()
        engine.dispose()


def test_grafana_reads_the_metrics_tables_and_cannot_write(stack_db):
    # The tables are created later, by the metrics role through the real MetricsDB.
    assert MetricsDB(url=stack_db.metrics_url).engine() is not None
    grafana = connect(stack_db, "METRICS_DB", "GRAFANA_DB_USER")
    with grafana.connect() as conn:
        for table in ("dummy_metrics", "model_timeline", "alerts"):
            assert conn.execute(sa.text(f"select count(*) from {table}")).scalar() == 0
        for statement in (
            "insert into alerts (model_name, rule, metric, op, threshold, timestamp, value, retrain, "
            "detected_at, status) values ('m', 'rmse_ratio', 'rmse_ratio', '>', 1.5, now(), 2, true, "
            "now(), 'sent')",
            "update alerts set status = 'sent'",
            "delete from dummy_metrics",
            "create table grafana_was_here (x int)",
            "drop table model_timeline",
        ):
            with pytest.raises(sa.exc.ProgrammingError, match=r"permission denied|must be owner"):
                conn.execute(sa.text(statement))
    grafana.dispose()


def test_the_script_is_idempotent_and_refuses_a_missing_password(stack_db):
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("PG")},
        **stack_db.names,
        "PGHOST": stack_db.host,
        "PGPORT": str(stack_db.port),
        "POSTGRES_USER": sa.make_url(PG_ADMIN_URL).username or "postgres",
        "METRICS_DB_PASSWORD": "x",
        "DAGSTER_PG_PASSWORD": "x",
        "MLFLOW_DB_PASSWORD": "x",
        "GRAFANA_DB_PASSWORD": "x",
    }
    again = subprocess.run(["bash", str(INIT_SCRIPT)], env=env, capture_output=True, text=True, timeout=60)
    assert again.returncode == 0, again.stderr
    assert "done" in again.stdout
    del env["MLFLOW_DB_PASSWORD"]
    refused = subprocess.run(["bash", str(INIT_SCRIPT)], env=env, capture_output=True, text=True, timeout=60)
    assert refused.returncode == 1
    assert "MLFLOW_DB_PASSWORD is not set" in refused.stderr
