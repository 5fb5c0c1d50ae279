"""The metrics DB's schema is Alembic's: an empty database is brought to the head revision, a
database the last release without Alembic created is adopted with its rows intact, two
processes migrating at once do it once, and the tables the code queries (each domain's
``store.py``, ``dummy_metrics`` from the ``DailyMetrics`` row) are exactly what the revisions
create. On SQLite and on a real PostgreSQL server (a throwaway database); nothing is faked.
"""

from __future__ import annotations

import threading
from datetime import date, datetime

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from mlops_assets.alerting.store import AlertStore
from mlops_assets.lib.storage.engine import MetricsDB, metadata
from mlops_assets.lib.storage.migrate import VERSION_TABLE, current, head, migrate
from mlops_assets.monitoring.store import DailyMetricsStore, dummy_metrics
from mlops_assets.ops.store import NoticeStore  # noqa: F401  (registers ops_notices)
from mlops_assets.training.store import TimelineStore
from mlops_core.daily_metrics import FIELDS

# --- the schema the last release created by itself (ensure_schema, before Alembic) -------------
RELEASE = sa.MetaData()
_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
sa.Table(
    "dummy_metrics",
    RELEASE,
    sa.Column("id", _ID, primary_key=True, autoincrement=True),
    sa.Column("model_name", sa.String(100), nullable=False),
    sa.Column("timestamp", sa.DateTime(), nullable=False),
    sa.Column("model_version", sa.String(50)),
    sa.Column("prediction_drift", sa.Float()),
    sa.Column("num_drifted_columns", sa.Integer()),
    sa.Column("drifted_columns", sa.Text()),
    sa.Column("share_missing_values", sa.Float()),
    sa.Column("n_rows", sa.Integer(), nullable=False),
    sa.Column("n_scored", sa.Integer(), nullable=False),
    sa.Column("drift_threshold", sa.Float()),
    sa.Column("report_path", sa.Text()),
    sa.Column("dagster_run_id", sa.String(64)),
    sa.Column("computed_at", sa.DateTime(), nullable=False),
    sa.Column("rmse", sa.Float()),
    sa.Column("mae", sa.Float()),
    sa.Column("mean_error", sa.Float()),
    sa.Column("rmse_ratio", sa.Float()),
    sa.Column("holdout_rmse", sa.Float()),
    sa.Column("drift_method", sa.String(32)),
    sa.UniqueConstraint("model_name", "timestamp", name="uq_dummy_metrics_model_timestamp"),
    sa.Index("ix_dummy_metrics_model_computed_at", "model_name", "computed_at"),
)
sa.Table(
    "model_timeline",
    RELEASE,
    sa.Column("id", _ID, primary_key=True, autoincrement=True),
    sa.Column("model_name", sa.String(100), nullable=False),
    sa.Column("model_version", sa.String(50), nullable=False),
    sa.Column("effective_from", sa.Date(), nullable=False),
    sa.Column("recorded_at", sa.DateTime(), nullable=False),
    sa.Column("reason", sa.Text()),
    sa.Column("holdout_rmse", sa.Float()),
    sa.Column("previous_version", sa.String(50)),
    sa.Column("previous_rmse", sa.Float()),
    sa.Column("window_end", sa.Date()),
    sa.UniqueConstraint("model_name", "effective_from", name="uq_model_timeline_model_day"),
)
sa.Table(
    "alerts",
    RELEASE,
    sa.Column("id", _ID, primary_key=True, autoincrement=True),
    sa.Column("model_name", sa.String(100), nullable=False),
    sa.Column("rule", sa.String(64), nullable=False),
    sa.Column("metric", sa.String(64), nullable=False),
    sa.Column("op", sa.String(2), nullable=False),
    sa.Column("threshold", sa.Float(), nullable=False),
    sa.Column("for_days", sa.Integer(), nullable=False, server_default="1"),
    sa.Column("timestamp", sa.DateTime(), nullable=False),
    sa.Column("value", sa.Float(), nullable=False),
    sa.Column("model_version", sa.String(50)),
    sa.Column("retrain", sa.Boolean(), nullable=False),
    sa.Column("detected_at", sa.DateTime(), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"),
    sa.Column("last_error", sa.Text()),
    sa.Column("sent_at", sa.DateTime()),
    sa.Column("message_id", sa.String(255)),
    sa.UniqueConstraint("model_name", "rule", "timestamp", name="uq_alerts_model_rule_timestamp"),
    sa.Index("ix_alerts_status", "model_name", "status"),
)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def url(request, tmp_path):
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'metrics.db'}"
        return
    from mlops_assets_tests.conftest import throwaway_database

    with throwaway_database("mlops_migrations") as pg:
        yield pg


def schema_differences(engine: sa.Engine) -> list:
    """What Alembic's autogenerate finds between the database and the code's tables (the
    revision table left out)."""

    def ours(name, type_, parent_names):
        return type_ != "table" or name in metadata.tables

    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"include_name": ours, "compare_type": True})
        return compare_metadata(context, metadata)


def revision(engine: sa.Engine) -> str | None:
    with engine.connect() as conn:
        return current(conn)


def test_dummy_metrics_has_a_column_for_each_field_of_the_daily_row():
    assert [c.name for c in dummy_metrics.columns] == ["id", *(f.name for f in FIELDS)]


def test_an_empty_database_gets_the_head_revision_and_the_codes_tables(url):
    engine = sa.create_engine(url)
    changes = migrate(engine)
    assert changes[:3] == [
        "created table dummy_metrics",
        "created table model_timeline",
        "created table alerts",
    ]
    assert revision(engine) == head()
    assert schema_differences(engine) == []
    assert migrate(engine) == []  # at the head: nothing to do
    engine.dispose()


def test_a_database_the_last_release_created_is_adopted_with_its_rows(url):
    engine = sa.create_engine(url)
    RELEASE.create_all(engine)
    with engine.begin() as conn:
        conn.execute(
            RELEASE.tables["dummy_metrics"].insert(),
            {
                "model_name": "m",
                "timestamp": datetime(2022, 2, 1),
                "prediction_drift": 0.31,
                "n_rows": 2000,
                "n_scored": 1990,
                "computed_at": datetime(2026, 1, 1),
            },
        )
        conn.execute(
            RELEASE.tables["model_timeline"].insert(),
            {
                "model_name": "m",
                "model_version": "1",
                "effective_from": date(2022, 2, 1),
                "recorded_at": datetime(2026, 1, 1),
            },
        )
    assert revision(engine) is None
    changes = migrate(engine)
    # the baseline adds nothing (it is that release's schema); later revisions are applied
    assert changes and all(line.startswith("applied revision ") for line in changes), changes
    assert revision(engine) == head()
    assert schema_differences(engine) == []
    engine.dispose()

    db = MetricsDB(url=url)  # the code reads and writes it as before
    (row,) = DailyMetricsStore(db).rows("m")
    assert (row.timestamp, row.prediction_drift, row.n_scored) == (datetime(2022, 2, 1), 0.31, 1990)
    assert [t["model_version"] for t in TimelineStore(db).entries("m")] == ["1"]
    assert AlertStore(db).all("m") == []


def test_an_older_table_gets_its_missing_columns_and_index(url):
    """A dummy_metrics table from before the quality columns and the computed_at index."""
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "create table dummy_metrics (id integer primary key, model_name varchar(100) not null, "
                "timestamp timestamp not null, model_version varchar(50), prediction_drift float, "
                "num_drifted_columns int, share_missing_values float, n_rows int not null, "
                "n_scored int not null, drift_threshold float, computed_at timestamp not null, "
                "constraint uq_dummy_metrics_model_timestamp unique (model_name, timestamp))"
            )
        )
        conn.execute(
            sa.text(
                "insert into dummy_metrics (id, model_name, timestamp, n_rows, n_scored, computed_at) "
                "values (1, 'm', '2022-02-01', 1, 1, '2026-01-01')"
            )
        )
    changes = migrate(engine)
    for column in ("report_path", "dagster_run_id", "rmse", "rmse_ratio", "drift_method", "drifted_columns"):
        assert f"added column dummy_metrics.{column}" in changes
    assert "added index ix_dummy_metrics_model_computed_at" in changes
    assert {"created table model_timeline", "created table alerts"} <= set(changes)
    assert migrate(engine) == []
    with engine.connect() as conn:
        assert conn.execute(sa.text("select count(*) from dummy_metrics")).scalar() == 1
        assert conn.execute(sa.text(f"select version_num from {VERSION_TABLE}")).scalar() == head()
    engine.dispose()


def test_two_processes_migrating_at_once_do_it_once(url):
    """Two engines (as two processes would have) racing on an empty database: one creates the
    tables under the lock, the other finds them at the head."""
    engines = [sa.create_engine(url) for _ in range(2)]
    results: list = [None, None]
    start = threading.Barrier(2)

    def run(i: int) -> None:
        start.wait()
        try:
            results[i] = migrate(engines[i])
        except Exception as exc:  # the assertion below shows it
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert all(isinstance(r, list) for r in results), results
    done, waited = sorted(results, key=len, reverse=True)
    assert done[:3] == ["created table dummy_metrics", "created table model_timeline", "created table alerts"]
    assert waited == [], results
    assert revision(engines[0]) == head()
    for engine in engines:
        engine.dispose()
