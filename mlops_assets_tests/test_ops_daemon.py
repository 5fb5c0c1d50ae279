"""The platform's own alerts under the real Dagster daemon: a failing monitoring run reaches
the inbox as one email naming the job, and a daemon restart sends no second one.

Starts ``dagster-daemon run`` on a test instance (a temporary DAGSTER_HOME) with the real
workspace; the ops sensors are on by default, so nothing is turned on by hand. The run is
submitted to the run queue with the real CLI (``dagster job launch``), dequeued and executed by
the daemon, and fails for real: its month's trip file is missing (TRIP_DATA_DIR is an empty
folder). Email goes to a real SMTP server on loopback (aiosmtpd). Nothing is faked.
"""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import pytest

from bench.support import free_port, start_process, stop_process, wait_for
from mlops_assets import constants as C
from mlops_assets import resources as R
from mlops_assets.ops.store import NoticeStore
from mlops_assets_tests.test_alerting import SmtpServer

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def _state(instance, name):
    states = [s for s in instance.all_instigator_state() if s.name == name]
    return states[0] if states else None


def _ticks(instance, name) -> int:
    state = _state(instance, name)
    return len(instance.get_ticks(state.instigator_origin_id, state.selector_id)) if state else 0


@pytest.mark.e2e
def test_a_failing_run_is_emailed_once_across_a_daemon_restart(settings, tmp_path):
    port = free_port()
    empty = tmp_path / "no-trips"
    empty.mkdir()
    env = {
        **os.environ,
        "SMTP_HOST": "127.0.0.1",
        "SMTP_PORT": str(port),
        "ALERT_EMAIL_TO": "oncall@example.com",
        "ALERT_EMAIL_TO_OPS": "platform@example.com",
        "TRIP_DATA_DIR": str(empty),
    }
    instance = dg.DagsterInstance.get()
    daemon_cmd = [str(BIN / "dagster-daemon"), "run", "-w", "workspace.yaml"]

    def cursor_set():
        state = _state(instance, C.RUN_FAILURE_SENSOR)
        return state and state.instigator_data and state.instigator_data.cursor

    with SmtpServer(port) as inbox:
        daemon = start_process(daemon_cmd, cwd=REPO, log_path=tmp_path / "daemon.log", env=env)
        try:
            # Dagster's run-failure sensor starts from the newest failure at its first tick
            wait_for(cursor_set, timeout=120, what="ops_run_watch's first tick")
            launch = subprocess.run(
                [
                    str(BIN / "dagster"),
                    "job",
                    "launch",
                    "-w",
                    "workspace.yaml",
                    "-j",
                    C.MONITORING_JOB,
                    "--tags",
                    json.dumps({"dagster/partition": "2022-02-07"}),
                ],
                cwd=REPO,
                env=env,
                capture_output=True,
                text=True,
                timeout=180,
            )
            assert launch.returncode == 0, launch.stderr
            (run,) = instance.get_runs(filters=dg.RunsFilter(job_name=C.MONITORING_JOB))

            def finished():
                current = instance.get_run_by_id(run.run_id)
                return current if current.is_finished else None

            done = wait_for(finished, timeout=240, interval=1, what="the failing run")
            assert done.status == dg.DagsterRunStatus.FAILURE
            failed_at = time.monotonic()
            wait_for(lambda: inbox.messages, timeout=120, what="the platform email")
            latency = time.monotonic() - failed_at
        finally:
            stop_process(daemon)

        # A restart: the sensors pick up their cursors; no second email
        daemon = start_process(daemon_cmd, cwd=REPO, log_path=tmp_path / "daemon2.log", env=env)
        try:
            seen = {name: _ticks(instance, name) for name in (C.RUN_FAILURE_SENSOR, C.OPS_WATCH_SENSOR)}
            for name, count in seen.items():
                wait_for(
                    lambda name=name, count=count: _ticks(instance, name) > count,
                    timeout=120,
                    what=f"a tick of {name}",
                )
        finally:
            stop_process(daemon)

    log = (tmp_path / "daemon.log").read_text(errors="replace")
    assert len(inbox.messages) == 1, log[-4000:]
    msg = inbox.messages[0]
    assert msg["To"] == "platform@example.com"
    assert msg["Subject"] == (
        f"[mlops_assets platform] run failed: {C.MONITORING_JOB} 2022-02-07 ({run.run_id[:8]})"
    )
    body = msg.get_content()
    assert "has no green_tripdata_2022-02.parquet" in body
    assert f"/runs/{run.run_id}" in body
    assert latency < 90, f"the email came {latency:.0f} s after the run failed"
    (notice,) = NoticeStore(R.metrics_db(settings)).all()
    assert notice["status"] == "sent" and notice["key"] == run.run_id
