"""Nothing waits forever on the metrics DB: a lock held elsewhere and a statement that runs too
long fail within the resource's timeouts, with an error that says so, and write nothing.

Real PostgreSQL (a throwaway database per test) and a real SQLite file. The lock is real: a
second session takes ``LOCK TABLE dummy_metrics IN ACCESS EXCLUSIVE MODE`` (what ``ALTER
TABLE``, ``VACUUM FULL`` or ``TRUNCATE`` take) and keeps its transaction open. Each call under
test runs in a worker thread (or a child process) with a generous deadline, so a wait without
bound fails the test instead of hanging it; releasing the lock in ``finally`` lets it end.
That the call really waited for the held lock is observed in ``pg_stat_activity`` (a session
blocked by the holder's pid), not inferred from a duration. The durations measured are
reported, not asserted.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from datetime import datetime

import dagster as dg
import pytest
import sqlalchemy as sa

from bench.support import wait_for
from mlops_assets import constants as C
from mlops_assets.definitions import build_defs
from mlops_assets.lib.storage.engine import MetricsDB, MetricsDBTimeout, upsert_statement
from mlops_assets.monitoring.store import DailyMetricsStore, dummy_metrics
from mlops_assets.resources import build_resources
from mlops_assets.training.store import TimelineStore
from mlops_assets_tests.helpers import copy_timeline, default_spec, failure_message
from mlops_core.daily_metrics import DailyMetrics

SPEC = default_spec()
MONITORING = [C.TRIPS, C.PREDICTIONS, C.DRIFT_METRICS, C.DUMMY_METRICS]
DAYS = ("2022-02-01", "2022-02-02")
DEADLINE = 120  # seconds: "it returned at all"; the timeouts under test are 1-10 s


def row(day: str) -> DailyMetrics:
    return DailyMetrics(
        model_name=SPEC.name,
        timestamp=datetime.fromisoformat(day),
        model_version="1",
        prediction_drift=0.1,
        n_rows=10,
        n_scored=10,
        computed_at=datetime(2026, 1, 1),
    )


def count_rows(url: str) -> tuple[int, int]:
    """(rows, distinct days) in dummy_metrics, read by a session of its own."""
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return tuple(
                conn.execute(sa.text("select count(*), count(distinct timestamp) from dummy_metrics")).one()
            )
    finally:
        engine.dispose()


@contextlib.contextmanager
def held_lock(url: str, table: str = "dummy_metrics"):
    """Another session holding ACCESS EXCLUSIVE on ``table`` until the block ends; yields its pid."""
    engine = sa.create_engine(url)
    conn = engine.connect()
    try:
        conn.execute(sa.text("set application_name = 'lock-holder'"))
        conn.execute(sa.text(f"lock table {table} in access exclusive mode"))
        yield conn.execute(sa.text("select pg_backend_pid()")).scalar()
    finally:
        conn.rollback()
        conn.close()
        engine.dispose()


def blocked_by(url: str, holder_pid: int) -> list[int]:
    """The pids of sessions waiting for a lock that ``holder_pid`` holds."""
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return list(
                conn.execute(
                    sa.text(
                        "select pid from pg_stat_activity where datname = current_database() "
                        "and :holder = any(pg_blocking_pids(pid))"
                    ),
                    {"holder": holder_pid},
                ).scalars()
            )
    finally:
        engine.dispose()


class Bounded:
    """``fn()`` in a worker thread: its result or exception, and how long it took."""

    def __init__(self, fn):
        self.result = self.error = self.seconds = None
        self._started = time.monotonic()

        def run():
            try:
                self.result = fn()
            except BaseException as exc:  # handed to the test
                self.error = exc
            finally:
                self.seconds = time.monotonic() - self._started

        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()

    def done(self) -> bool:
        return not self._thread.is_alive()

    def wait(self, what: str):
        self._thread.join(DEADLINE)
        if self._thread.is_alive():
            pytest.fail(f"{what} was still waiting after {DEADLINE} s: nothing bounds the wait")
        return self


def wait_until_blocked(url: str, holder_pid: int, call: Bounded) -> None:
    """The call under test is seen waiting for the held lock (or has already returned)."""
    wait_for(
        lambda: call.done() or blocked_by(url, holder_pid),
        timeout=DEADLINE,
        interval=0.05,
        what="a session waiting for the held lock",
    )
    assert not call.done() or call.error is not None, "the call neither waited nor failed"


def monitor(defs, first: str, last: str):
    return dg.materialize(
        list(defs.assets),
        selection=[dg.AssetKey([SPEC.name, n]) for n in MONITORING],
        resources=defs.resources,
        tags={"dagster/asset_partition_range_start": first, "dagster/asset_partition_range_end": last},
        raise_on_error=False,
    )


def with_password(url: str) -> str:
    # trust auth ignores the password; it is there to show it never reaches a message
    return sa.make_url(url).set(password="s3cret").render_as_string(hide_password=False)


# --- defaults ---------------------------------------------------------------------------------
@pytest.mark.postgres
def test_postgres_sessions_carry_lock_and_statement_timeouts(postgres_url):
    with MetricsDB(url=postgres_url).transaction() as conn:
        assert conn.execute(sa.text("show lock_timeout")).scalar() == "10s"
        assert conn.execute(sa.text("show statement_timeout")).scalar() == "1min"
    # a URL's own libpq options are kept, and may override the resource's
    url = sa.make_url(postgres_url).update_query_dict({"options": "-c lock_timeout=3s"})
    with MetricsDB(url=url.render_as_string(hide_password=False)).transaction() as conn:
        assert conn.execute(sa.text("show lock_timeout")).scalar() == "3s"
        assert conn.execute(sa.text("show statement_timeout")).scalar() == "1min"


def test_sqlite_busy_timeout_is_bounded(tmp_path):
    url = f"sqlite:///{tmp_path / 'metrics.db'}"
    with MetricsDB(url=url).transaction() as conn:
        assert conn.execute(sa.text("pragma busy_timeout")).scalar() == 30_000  # ms

    db = MetricsDB(url=url, sqlite_busy_timeout_seconds=1)
    db.engine()
    holder = sqlite3.connect(tmp_path / "metrics.db", isolation_level=None)
    holder.execute("begin exclusive")  # another writer holds the database file
    try:
        call = Bounded(lambda: DailyMetricsStore(db).upsert([row(DAYS[0])])).wait(
            "a write to a locked SQLite file"
        )
    finally:
        holder.execute("rollback")
        holder.close()
    assert isinstance(call.error, MetricsDBTimeout), call.error
    assert str(call.error) == (
        f"the metrics DB at {url} did not grant a lock on dummy_metrics within 1 s (SQLite busy "
        "timeout): another connection holds the database file's lock; its transaction was rolled "
        "back, nothing was written"
    )
    assert [r.as_dict() for r in DailyMetricsStore(db).rows(SPEC.name)] == []
    assert DailyMetricsStore(db).upsert([row(DAYS[0])]) == 1
    assert len([r.as_dict() for r in DailyMetricsStore(db).rows(SPEC.name)]) == 1


# --- a held lock ------------------------------------------------------------------------------
@pytest.mark.postgres
def test_a_held_lock_fails_a_write_within_the_lock_timeout_and_writes_nothing(postgres_url, report_figure):
    url = with_password(postgres_url)
    db = MetricsDB(url=url)  # the defaults: lock_timeout 10 s
    db.engine()  # tables created before the lock is taken
    rows = [row(day) for day in DAYS]
    with held_lock(postgres_url) as holder:
        call = Bounded(lambda: DailyMetricsStore(db).upsert(rows))
        wait_until_blocked(postgres_url, holder, call)
        # the lock stops what needs dummy_metrics, not the other tables
        assert TimelineStore(MetricsDB(url=url, lock_timeout_seconds=1)).entries(SPEC.name) == []
        call.wait("upsert_metrics under a held lock")
    assert isinstance(call.error, MetricsDBTimeout), call.error
    message = str(call.error)
    shown = sa.make_url(url).render_as_string(hide_password=True)
    assert message.startswith(
        f"the metrics DB at {shown} did not grant a lock on dummy_metrics within 10 s (lock_timeout): "
        f"another session holds dummy_metrics (AccessExclusiveLock; pid {holder}, application "
        "'lock-holder', idle in transaction, in a transaction for "
    ), message
    assert message.endswith("; its transaction was rolled back, nothing was written"), message
    assert "s3cret" not in message
    report_figure(f"upsert_metrics under a held ACCESS EXCLUSIVE lock failed after {call.seconds:.1f} s")
    report_figure(f"  {message}")

    assert count_rows(postgres_url) == (0, 0)  # nothing half-written
    assert DailyMetricsStore(db).upsert(rows) == 2  # the lock released: the same call succeeds
    assert DailyMetricsStore(db).upsert(rows) == 2
    assert count_rows(postgres_url) == (2, 2)  # exactly one row per day


@pytest.mark.postgres
def test_a_row_held_by_another_open_write_fails_within_the_lock_timeout_naming_the_writer(postgres_url):
    db = MetricsDB(url=postgres_url, lock_timeout_seconds=1)
    assert DailyMetricsStore(db).upsert([row(DAYS[0])]) == 1
    engine = sa.create_engine(postgres_url)
    writer = engine.connect()  # another run writing the same day, its transaction still open
    try:
        writer.execute(sa.text("set application_name = 'row-writer'"))
        writer.execute(sa.text("update dummy_metrics set n_rows = 11 where timestamp = :d"), {"d": DAYS[0]})
        pid = writer.execute(sa.text("select pg_backend_pid()")).scalar()
        call = Bounded(lambda: DailyMetricsStore(db).upsert([row(DAYS[1]), row(DAYS[0]).replace(n_rows=12)]))
        wait_until_blocked(postgres_url, pid, call)
        call.wait("an upsert of a row another transaction is writing")
    finally:
        writer.rollback()
        writer.close()
        engine.dispose()
    assert isinstance(call.error, MetricsDBTimeout), call.error
    message = str(call.error)
    assert message.startswith(
        f"the metrics DB at {postgres_url} did not grant a lock on dummy_metrics within 1 s (lock_timeout): "
        f"another session holds rows of dummy_metrics (an open transaction writing to it; pid {pid}, "
        "application 'row-writer', idle in transaction"
    ), message
    assert [r["n_rows"] for r in [r.as_dict() for r in DailyMetricsStore(db).rows(SPEC.name)]] == [
        10
    ]  # neither day of the batch written
    assert DailyMetricsStore(db).upsert([row(DAYS[1]), row(DAYS[0]).replace(n_rows=12)]) == 2
    assert [r["n_rows"] for r in [r.as_dict() for r in DailyMetricsStore(db).rows(SPEC.name)]] == [12, 10]


@pytest.mark.postgres
def test_a_lock_on_dummy_metrics_fails_the_monitoring_run_clearly_and_a_rerun_writes_each_day_once(
    home, settings, postgres_url, report_figure
):
    copy_timeline(SPEC.name, settings.metrics_database_url, postgres_url)  # v1, in effect from 2022-02-01
    resources = build_resources(dataclasses.replace(settings, metrics_database_url=postgres_url))
    # a fresh resource, as in a new run process; a short lock timeout keeps the test short
    db = MetricsDB(url=postgres_url, lock_timeout_seconds=1)
    defs = build_defs([SPEC], {**resources, C.METRICS_DB: db})

    with held_lock(postgres_url) as holder:
        run = Bounded(lambda: monitor(defs, *DAYS))
        wait_until_blocked(postgres_url, holder, run)
        run.wait("the monitoring run under a held lock")
    assert run.error is None, run.error
    result = run.result
    assert not result.success
    message = failure_message(result)
    assert (
        f"the metrics DB at {postgres_url} did not grant a lock on dummy_metrics within 1 s "
        f"(lock_timeout): another session holds dummy_metrics (AccessExclusiveLock; pid {holder}, "
        "application 'lock-holder'"
    ) in message, message
    # predictions and drift ran (the lock stops only the write); the write was retried as a
    # step, like an outage (RetryPolicy: 2 retries), then failed the run
    done = {e.asset_key.path[-1] for e in result.get_asset_materialization_events()}
    assert done == {C.TRIPS, C.PREDICTIONS, C.DRIFT_METRICS}
    retries = [e.step_key for e in result.all_events if e.event_type_value == "STEP_UP_FOR_RETRY"]
    assert len(retries) == 2 and all(k.endswith(C.DUMMY_METRICS) for k in retries), retries
    report_figure(
        f"monitoring run ({len(DAYS)} days) under a held lock, lock_timeout 1 s: failed after "
        f"{run.seconds:.1f} s (3 attempts of the dummy_metrics step)"
    )
    assert count_rows(postgres_url) == (0, 0)  # nothing half-written

    rerun = monitor(defs, *DAYS)  # the lock released
    assert rerun.success, failure_message(rerun)
    assert count_rows(postgres_url) == (2, 2)  # exactly one row per day


# --- a statement that runs too long ------------------------------------------------------------
@pytest.mark.postgres
def test_a_statement_that_runs_too_long_is_cancelled_and_its_transaction_rolled_back(postgres_url):
    db = MetricsDB(url=postgres_url, statement_timeout_seconds=1)
    engine = db.engine()

    def write_then_sleep():
        with db.transaction() as conn:
            conn.execute(
                upsert_statement(engine, dummy_metrics, [row(DAYS[0]).as_dict()], ("model_name", "timestamp"))
            )
            conn.execute(sa.text("select pg_sleep(300)"))  # a statement that runs too long

    call = Bounded(write_then_sleep).wait("a transaction with a 300 s statement")
    assert isinstance(call.error, MetricsDBTimeout), call.error
    assert str(call.error) == (
        f"the metrics DB at {postgres_url} cancelled a statement after 1 s (statement_timeout); "
        "its transaction was rolled back, nothing was written"
    )
    assert count_rows(postgres_url) == (0, 0)  # the upsert before it was rolled back too


# --- SIGTERM while waiting ----------------------------------------------------------------------
RUN_SCRIPT = """
import dataclasses, json, sys
from pathlib import Path
import dagster as dg
from mlops_assets.definitions import build_defs
from mlops_assets.resources import build_resources
from mlops_assets.settings import Settings
from mlops_assets_tests.helpers import default_spec, failure_message

home, data_dir, url, first, last = sys.argv[1:]
spec = default_spec()
settings = dataclasses.replace(
    Settings.for_home(Path(home), trip_data_dir=Path(data_dir)), metrics_database_url=url
)
defs = build_defs([spec], build_resources(settings))
result = dg.materialize(
    list(defs.assets),
    selection=[
        dg.AssetKey([spec.name, n]) for n in ("trips", "predictions", "drift_metrics", "dummy_metrics")
    ],
    resources=defs.resources,
    tags={"dagster/asset_partition_range_start": first, "dagster/asset_partition_range_end": last},
    raise_on_error=False,
)
print(json.dumps({"success": result.success, "message": failure_message(result)}))
"""


@pytest.mark.postgres
def test_sigterm_during_a_lock_wait_ends_the_run_within_its_bounded_attempts(
    home, settings, postgres_url, trip_data_dir, tmp_path, report_figure
):
    """A monitoring run in a process of its own (Dagster's own signal handling, the resource's
    defaults) is waiting for the held lock when it gets SIGTERM; the lock is never released.

    Python runs a signal handler only when the driver's call returns, so SIGTERM cannot cut
    the wait short: it takes effect when the lock timeout ends the wait (Dagster raises its
    interrupt there). Dagster then retries the step, as it does for any interrupted step with
    a RetryPolicy, and each attempt is bounded the same way: the process ends on its own,
    with the clear error and nothing written. Without the timeouts it waited for the lock.
    """
    copy_timeline(SPEC.name, settings.metrics_database_url, postgres_url)
    out_path, err_path = tmp_path / "run.out", tmp_path / "run.err"
    with held_lock(postgres_url) as holder, out_path.open("w") as out, err_path.open("w") as err:
        proc = subprocess.Popen(
            [sys.executable, "-c", RUN_SCRIPT, str(home), str(trip_data_dir), postgres_url, *DAYS],
            stdout=out,
            stderr=err,
            env=os.environ,
        )
        try:
            wait_for(
                lambda: proc.poll() is not None or blocked_by(postgres_url, holder),
                timeout=DEADLINE,
                interval=0.1,
                what="the run's write waiting for the lock",
            )
            assert proc.poll() is None, err_path.read_text()[-3000:]
            sent = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=DEADLINE)
            except subprocess.TimeoutExpired:
                pytest.fail(f"the run was still waiting {DEADLINE} s after SIGTERM")
            stopped = time.monotonic() - sent
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    report_figure(
        f"monitoring run waiting for a held lock (defaults: lock_timeout 10 s, 3 step attempts): "
        f"ended {stopped:.1f} s after SIGTERM"
    )
    log = err_path.read_text()
    assert "DagsterExecutionInterruptedError" in log  # the signal arrived, and acted when the wait ended
    outcome = json.loads(out_path.read_text().strip().splitlines()[-1])
    assert not outcome["success"]
    assert "did not grant a lock on dummy_metrics within 10 s (lock_timeout)" in outcome["message"]
    assert count_rows(postgres_url) == (0, 0)
