"""The compose stack's Dagster side, as real processes on a real PostgreSQL instance storage.

Exercises the repo's dagster.yaml (copied into a temporary DAGSTER_HOME, DAGSTER_PG_*
pointing at the Dagster database that config/postgres/init-databases.sh made, as its own
role), and the commands and healthchecks of docker-compose.yml's Dagster services, taken from
the compose file: `dagster instance migrate` (dagster-init), `dagster code-server start`
(user-code, health-checked with `dagster api grpc-health-check`), `dagster-daemon run` on
workspace.docker.yaml (health-checked with `dagster-daemon liveness-check`). A monitoring run
is launched into the run queue with the real CLI, dequeued by the daemon and executed by the
DefaultRunLauncher inside the code server, on the real assets and real TLC files, writing to a
real PostgreSQL metrics DB; the real drift sensor is started with the CLI and ticks under the
daemon, and the automation sensor redraws ``monitoring_history`` after the run. Then everything
is stopped and a new process on the same database must still see the
runs, the materialized partitions and the sensor's cursor.

Replaced: Docker. The services' host names become 127.0.0.1 and a free port, container paths
become temporary folders; MLflow is the SQLite store of the `home` fixture (monitoring only
reads the model bundle; test_mlflow_server.py covers the MLflow server). The code location's
settings (METRICS_DATABASE_URL, DRIFT_THRESHOLD, MLOPS_HOME, TRIP_DATA_DIR) are in the
environment of the processes started, as in the containers: ``Settings.from_env`` reads them
there; this process only sets what its own DagsterInstance reads (DAGSTER_HOME, DAGSTER_PG_*).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa
import yaml

from bench.support import start_process, stop_process, wait_for
from mlops_assets import constants as C
from mlops_assets.alerting.sensor import read_cursor, sensor_name
from mlops_assets.lib.storage.engine import MetricsDB
from mlops_assets.monitoring.store import DailyMetricsStore
from mlops_assets_tests.helpers import copy_timeline, default_spec
from mlops_assets_tests.stack.support import REPO, SECRETS, compose, dotenv, start_listening

pytestmark = [pytest.mark.postgres, pytest.mark.e2e]

BIN = Path(sys.executable).parent
SPEC = default_spec()
DAYS = ("2022-02-01", "2022-02-02", "2022-02-03")


def command(services: dict, name: str, replace: dict[str, str]) -> list[str]:
    """A service's command from docker-compose.yml, with container-only values replaced."""
    cmd = [replace.get(part, part) for part in services[name]["command"]]
    assert cmd[0] in ("dagster", "dagster-daemon", "dagster-webserver")
    return [str(BIN / cmd[0]), *cmd[1:]]


def healthcheck(services: dict, name: str, replace: dict[str, str]) -> list[str]:
    test = services[name]["healthcheck"]["test"]
    assert test[0] == "CMD"
    cmd = [replace.get(part, part) for part in test[1:]]
    return [str(BIN / cmd[0]), *cmd[1:]]


def healthy(cmd: list[str], env: dict) -> bool:
    return subprocess.run(cmd, env=env, capture_output=True, timeout=60, check=False).returncode == 0


STATE_SCRIPT = """
import json
import dagster as dg
instance = dg.DagsterInstance.get()
runs = instance.get_runs()
(sensor,) = [s for s in instance.all_instigator_state() if s.name == {sensor!r}]
key = dg.AssetKey([{spec!r}, "trips"])
print(json.dumps({{
    "storage": type(instance.run_storage).__name__,
    "runs": [[r.run_id, r.status.value, r.job_name] for r in runs],
    "sensor_status": sensor.status.value,
    "cursor": sensor.instigator_data.cursor,
    "trips_partitions": sorted(instance.get_materialized_partitions(key)),
}}))
"""


def test_compose_dagster_services_run_queue_sensor_and_survive_a_restart(
    home, settings, stack_db, tmp_path, monkeypatch
):
    services = compose(dotenv(**SECRETS))["services"]
    dagster_home = tmp_path / "dagster_home"  # the image's DAGSTER_HOME, with the repo's dagster.yaml
    dagster_home.mkdir(exist_ok=True)
    shutil.copy(REPO / "dagster.yaml", dagster_home / "dagster.yaml")
    workspace = tmp_path / "workspace.yaml"  # workspace.docker.yaml, user-code:4000 -> 127.0.0.1:port

    def point_workspace_at(port: int) -> None:
        ws = yaml.safe_load((REPO / "workspace.docker.yaml").read_text())
        ws["load_from"][0]["grpc_server"].update(host="127.0.0.1", port=port)
        workspace.write_text(yaml.safe_dump(ws))

    # The metrics DB is PostgreSQL; the model in effect (v1 from 2022-02-01) is the home's.
    copy_timeline(SPEC.name, settings.metrics_database_url, stack_db.metrics_url)
    metrics = MetricsDB(url=stack_db.metrics_url)
    # dagster.yaml's instance (here and in every process started) reads these
    for name, value in {**stack_db.dagster_env(), "DAGSTER_HOME": str(dagster_home)}.items():
        monkeypatch.setenv(name, value)
    env = {
        **os.environ,  # MLOPS_HOME and TRIP_DATA_DIR of the test (root conftest)
        "METRICS_DATABASE_URL": stack_db.metrics_url,
        # no breach wanted: this test is about the instance (test_grafana.py has the alerts)
        "DRIFT_THRESHOLD": "0.9",
    }
    replace = {"0.0.0.0": "127.0.0.1", "/opt/dagster/app/workspace.yaml": str(workspace)}

    # dagster-init: creates the instance's tables, as the Dagster role
    init = subprocess.run(
        command(services, "dagster-init", replace), env=env, capture_output=True, text=True, timeout=180
    )
    assert init.returncode == 0, init.stderr
    dagster_db = sa.create_engine(stack_db.url("DAGSTER_PG_DB", "DAGSTER_PG_USERNAME"))
    with dagster_db.connect() as conn:
        tables = set(sa.inspect(conn).get_table_names())
    dagster_db.dispose()
    assert {"runs", "event_logs", "instigators", "job_ticks", "kvs", "daemon_heartbeats"} <= tables

    instance = dg.DagsterInstance.get()
    assert type(instance.run_storage).__name__ == "PostgresRunStorage"
    assert type(instance.run_launcher).__name__ == "DefaultRunLauncher"
    queue = instance.get_concurrency_config().run_queue_config
    assert queue.max_concurrent_runs == 4
    assert [(limit["key"], limit["limit"]) for limit in queue.tag_concurrency_limits] == [
        ("mlops/retrain", 1),
        ("dagster/backfill", 3),
    ]

    code_server = daemon = None
    try:

        def code_server_on(port: int):
            replace["4000"] = str(port)
            point_workspace_at(port)
            return command(services, "user-code", replace), env

        code_server, _ = start_listening(
            code_server_on,
            cwd=tmp_path,
            log_path=tmp_path / "code-server.log",
            ready=lambda port: healthy(healthcheck(services, "user-code", replace), env),
            what="the code server's healthcheck",
        )
        daemon = start_process(
            command(services, "dagster-daemon", replace),
            cwd=tmp_path,
            log_path=tmp_path / "daemon.log",
            env=env,
        )
        liveness = healthcheck(services, "dagster-daemon", replace)
        wait_for(lambda: healthy(liveness, env), timeout=120, interval=2, what="the daemon's liveness check")

        # A backfill of three days as one run, submitted to the queue like the UI's launchpad.
        tags = {"dagster/asset_partition_range_start": DAYS[0], "dagster/asset_partition_range_end": DAYS[-1]}
        launch = subprocess.run(
            [
                str(BIN / "dagster"),
                "job",
                "launch",
                "-w",
                str(workspace),
                "-j",
                "metrics_backfill_to_postgres",
                "--tags",
                json.dumps(tags),
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=180,
            cwd=tmp_path,
        )
        assert launch.returncode == 0, launch.stderr
        (run,) = instance.get_runs(filters=dg.RunsFilter(job_name="metrics_backfill_to_postgres"))
        assert run.status in (dg.DagsterRunStatus.QUEUED, *IN_PROGRESS, dg.DagsterRunStatus.SUCCESS)

        def finished():
            current = instance.get_run_by_id(run.run_id)
            return current if current.is_finished else None

        done = wait_for(finished, timeout=240, interval=1, what="the queued run")
        logs = (tmp_path / "code-server.log").read_text(errors="replace")
        assert done.status == dg.DagsterRunStatus.SUCCESS, logs[-4000:]
        # ...executed by the code server (DefaultRunLauncher), writing the real metrics rows
        events = [e for e in instance.all_logs(run.run_id) if e.is_dagster_event]
        assert {e.dagster_event_type.name for e in events} >= {
            "RUN_ENQUEUED",
            "RUN_STARTING",
            "RUN_START",
            "RUN_SUCCESS",
        }, {e.dagster_event_type.name for e in events}
        engine = {e.message.split(" (pid")[0] for e in events if e.dagster_event_type.name == "ENGINE_EVENT"}
        assert "Started process for run" in engine  # the code server's run subprocess
        rows = [r.as_dict() for r in DailyMetricsStore(metrics).rows(SPEC.name)]
        assert [str(r["timestamp"].date()) for r in rows] == list(DAYS)
        assert {r["dagster_run_id"] for r in rows} == {run.run_id}
        assert {r["model_version"] for r in rows} == {"1"}
        # its run logs are in $DAGSTER_HOME/storage, the volume the webserver shares
        assert any(run.run_id in str(p) for p in (dagster_home / "storage").rglob("*"))

        # The daemon's automation sensor then redraws monitoring_history (on by default).
        def history_run():
            runs = instance.get_runs(filters=dg.RunsFilter(tags={"dagster/sensor_name": C.HISTORY_SENSOR}))
            return runs if runs and all(r.is_finished for r in runs) else None

        (drawn,) = wait_for(history_run, timeout=180, interval=1, what="the monitoring_history run")
        assert drawn.status == dg.DagsterRunStatus.SUCCESS, logs[-4000:]
        assert drawn.asset_selection == {dg.AssetKey([SPEC.name, C.MONITORING_HISTORY])}

        # The real drift sensor, started with the CLI, ticks under the daemon and keeps its cursor.
        started = subprocess.run(
            [str(BIN / "dagster"), "sensor", "start", sensor_name(SPEC), "-w", str(workspace)],
            env=env,
            capture_output=True,
            text=True,
            timeout=180,
            cwd=tmp_path,
        )
        assert started.returncode == 0, started.stderr
        newest = max(r["computed_at"] for r in rows)

        def ticked_with_cursor():
            state = sensor_state(instance)
            ticks = instance.get_ticks(state.instigator_origin_id, state.selector_id)
            return [t for t in ticks if t.cursor] or None

        (tick, *_) = wait_for(ticked_with_cursor, timeout=120, interval=1, what="a sensor tick")
        assert tick.status.value == "SKIPPED"  # no breach of 0.9
        assert read_cursor(tick.cursor) == newest
        # The daemon records the tick, then the sensor's state: wait for the second write too.
        wait_for(
            lambda: sensor_state(instance).instigator_data.cursor,
            timeout=60,
            interval=0.5,
            what="the sensor state's cursor",
        )
        assert read_cursor(sensor_state(instance).instigator_data.cursor) == newest
    finally:
        for proc in (daemon, code_server):
            if proc is not None:
                stop_process(proc)

    # Restart: nothing runs any more; a new process on the same database sees it all.
    out = subprocess.run(
        [sys.executable, "-c", STATE_SCRIPT.format(sensor=sensor_name(SPEC), spec=SPEC.name)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr
    state = json.loads(out.stdout.strip().splitlines()[-1])
    assert state["storage"] == "PostgresRunStorage"
    assert state["runs"] == [  # newest first
        [drawn.run_id, "SUCCESS", drawn.job_name],
        [run.run_id, "SUCCESS", "metrics_backfill_to_postgres"],
    ]
    assert state["sensor_status"] == "RUNNING"
    assert read_cursor(state["cursor"]) == newest
    assert state["trips_partitions"] == list(DAYS)
    # ...and so does a new instance object in this process
    fresh = dg.DagsterInstance.from_config(str(dagster_home))
    assert read_cursor(sensor_state(fresh).instigator_data.cursor) == newest
    assert fresh.get_run_by_id(run.run_id).status == dg.DagsterRunStatus.SUCCESS


IN_PROGRESS = (
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
)


def sensor_state(instance):
    (state,) = [s for s in instance.all_instigator_state() if s.name == sensor_name(SPEC)]
    return state
