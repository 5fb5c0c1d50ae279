"""The whole loop the way people use it: `dagster dev`, the webserver's GraphQL API, the
daemon, SMTP, MLflow, the prediction service under gunicorn, and a real browser.

One stack per module: ``dagster dev`` (webserver + daemon) on a temporary DAGSTER_HOME with
PostgreSQL storage (the repository's dagster.yaml, a throwaway database), the metrics DB in
the same PostgreSQL database, a local MLflow store, a loopback SMTP server (aiosmtpd) and the
prediction service under gunicorn. Nothing is faked: the backfill is launched with the same
GraphQL mutation as the UI's "Materialize → backfill" dialog, the sensor is switched on
through the API as a user would, and the daemon does the rest. The processes get the stack's
configuration as a deployment does, in their environment; the test's own code (training v1
before the stack starts, reading the stores) uses ``Settings.from_env`` of that same
environment, so both see the same stores.

Run alone with ``pytest -m e2e``. The browser test needs Debian's chromium (``.ci/run``
installs it); without it, that test says why it is skipped.
"""

import os
import re
import shutil
import socket
import time
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import pytest
import requests
import sqlalchemy as sa

from bench.support import (
    BACKFILL_STATUS,
    FINISHED,
    LAUNCH_BACKFILL,
    free_port,
    group_alive,
    start_dagster_dev,
    start_process,
    stop_process,
    wait_for,
    wait_http,
)
from mlops_assets import constants as C
from mlops_assets import resources as R
from mlops_assets.alerting.sensor import sensor_name
from mlops_assets.definitions import build_defs
from mlops_assets.lib.storage.engine import MetricsDB
from mlops_assets.monitoring.store import DailyMetricsStore
from mlops_assets.resources import build_resources
from mlops_assets.settings import Settings
from mlops_assets.training.retrain_asset import RETRAIN_TAG
from mlops_assets_tests.conftest import ENV_VARS, throwaway_database
from mlops_assets_tests.helpers import ARTIFACTS, BIN, MONITORING, REPO, chromium, default_spec
from mlops_assets_tests.test_alerting import SmtpServer

pytestmark = pytest.mark.e2e

SPEC = default_spec()
LOCATION, REPOSITORY = "mlops_assets", "__repository__"
FEBRUARY = [f"2022-02-{d:02d}" for d in range(1, 29)]


@dataclass
class Stack:
    dagster_url: str
    serving_url: str
    metrics_url: str
    home: Path
    settings: Settings  # the stack's code-location settings (Settings.from_env of its env)
    inbox: object
    dagster: object
    serving: object

    def graphql(self, query: str, variables: dict | None = None) -> dict:
        response = requests.post(
            f"{self.dagster_url}/graphql", json={"query": query, "variables": variables or {}}, timeout=60
        )
        response.raise_for_status()
        body = response.json()
        assert "errors" not in body, body["errors"]
        return body["data"]


def port_free(port: int) -> bool:
    """Nobody listens on ``port`` (connections in TIME_WAIT do not count)."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


@pytest.fixture(scope="module")
def stack(tmp_path_factory, trip_data_dir):
    root = tmp_path_factory.mktemp("e2e")
    ARTIFACTS.mkdir(exist_ok=True)
    home, dagster_home = root / "mlops_home", root / "dagster_home"
    dagster_home.mkdir()
    shutil.copy(REPO / "dagster.yaml", dagster_home / "dagster.yaml")
    smtp_port, dagster_port, serving_port = free_port(), free_port(), free_port()
    with (
        throwaway_database("mlops_e2e") as pg_url,
        pytest.MonkeyPatch.context() as mp,
        SmtpServer(smtp_port) as inbox,
    ):
        url = sa.make_url(pg_url)
        for name in ENV_VARS:
            mp.delenv(name, raising=False)
        # The Dagster instance (dagster.yaml reads these): this process's and the stack's.
        instance_env = {
            "DAGSTER_HOME": str(dagster_home),
            "DAGSTER_PG_USERNAME": url.username or "postgres",
            "DAGSTER_PG_PASSWORD": url.password or "",
            "DAGSTER_PG_HOST": url.host or "127.0.0.1",
            "DAGSTER_PG_PORT": str(url.port or 5432),
            "DAGSTER_PG_DB": url.database,
        }
        for key, value in instance_env.items():
            mp.setenv(key, value)
        # The code location's and the prediction service's configuration, for the processes.
        env = {
            "MLOPS_HOME": str(home),
            "METRICS_DATABASE_URL": pg_url,
            "TRIP_DATA_DIR": str(trip_data_dir),
            "SMTP_HOST": "127.0.0.1",
            "SMTP_PORT": str(smtp_port),
            "ALERT_EMAIL_TO": "oncall@example.com",
            "SERVING_URL": f"http://127.0.0.1:{serving_port}",
            "SERVING_RELOAD_TOKEN": "e2e-reload-token",
            "SERVING_PORT": str(serving_port),
            "SERVING_WORKERS": "2",
            "DAGSTER_UI_URL": f"http://127.0.0.1:{dagster_port}",
        }
        process_env = {**os.environ, **env}
        settings = Settings.from_env(env)
        # A secret the serving client reads through dg.EnvVar: this process needs it too.
        mp.setenv("SERVING_RELOAD_TOKEN", env["SERVING_RELOAD_TOKEN"])

        # v1: trained on 2021-01 (in effect from 2021-02-01); a year later its drift is high.
        defs = build_defs([SPEC], build_resources(settings))
        instance = dg.DagsterInstance.get()
        tags = {
            "dagster/asset_partition_range_start": "2021-01-01",
            "dagster/asset_partition_range_end": "2021-01-31",
        }
        key = lambda name: dg.AssetKey([SPEC.name, name])  # noqa: E731
        assert dg.materialize(
            list(defs.assets),
            selection=[key(C.TRIPS)],
            resources=defs.resources,
            tags=tags,
            instance=instance,
        ).success
        assert dg.materialize(
            list(defs.assets),
            selection=[key(C.DURATION_MODEL)],
            resources=defs.resources,
            partition_key="2021-01-01",
            instance=instance,
        ).success
        instance.dispose()

        serving_log, dagster_log = root / "serving.log", root / "dagster-dev.log"
        serving = start_process(
            [str(BIN / "gunicorn"), "-c", "serving/gunicorn.conf.py"],
            cwd=REPO,
            log_path=serving_log,
            env=process_env,
        )
        dagster = start_dagster_dev(
            bin_dir=BIN,
            workspace=REPO / "workspace.yaml",
            dagster_home=dagster_home,
            port=dagster_port,
            log_path=dagster_log,
            env=process_env,
        )
        the_stack = Stack(
            dagster_url=f"http://127.0.0.1:{dagster_port}",
            serving_url=f"http://127.0.0.1:{serving_port}",
            metrics_url=pg_url,
            home=home,
            settings=settings,
            inbox=inbox,
            dagster=dagster,
            serving=serving,
        )
        try:
            wait_http(f"{the_stack.serving_url}/ready", 90, serving, serving_log)
            wait_http(f"{the_stack.dagster_url}/server_info", 120, dagster, dagster_log)
            yield the_stack
        finally:
            stop_process(dagster, timeout=20)
            stop_process(serving, timeout=20)
            shutil.copy(dagster_log, ARTIFACTS / "e2e-dagster-dev.log")
            shutil.copy(serving_log, ARTIFACTS / "e2e-serving.log")
        # Clean shutdown: no process of either group left, the ports are free again.
        assert not group_alive(dagster.pid) and not group_alive(serving.pid)
        assert port_free(dagster_port) and port_free(serving_port)


START_SENSOR = """
mutation Start($selector: SensorSelector!) {
  startSensor(sensorSelector: $selector) {
    __typename
    ... on Sensor { name sensorState { status } }
    ... on Error { message }
  }
}"""
RUNS = """
query Runs($filter: RunsFilter!) {
  runsOrError(filter: $filter) {
    __typename
    ... on Runs { results { runId status tags { key value } } }
    ... on Error { message }
  }
}"""


def test_backfill_alert_retrain_promote_and_serve(stack):
    # 1. The UI's "Materialize → backfill" for February 2022, through the webserver.
    params = {
        "assetSelection": [{"path": [SPEC.name, name]} for name in MONITORING],
        "partitionNames": FEBRUARY,
        "fromFailure": False,
        "tags": [{"key": "dagster/from_ui", "value": "true"}],
    }
    launched = stack.graphql(LAUNCH_BACKFILL, {"params": params})["launchPartitionBackfill"]
    assert launched["__typename"] == "LaunchBackfillSuccess", launched
    backfill_id = launched["backfillId"]

    def backfill_done():
        status = stack.graphql(BACKFILL_STATUS, {"id": backfill_id})["partitionBackfillOrError"]
        return status if status.get("status") in FINISHED else None

    status = wait_for(backfill_done, timeout=300, interval=3, what="the February backfill")
    assert status["status"] == "COMPLETED_SUCCESS", status
    rows = [r.as_dict() for r in DailyMetricsStore(MetricsDB(url=stack.metrics_url)).rows(SPEC.name)]
    assert [str(r["timestamp"].date()) for r in rows] == FEBRUARY
    assert {r["model_version"] for r in rows} == {"1"}
    breaches = [r for r in rows if r["prediction_drift"] > 0.20]
    assert breaches, "v1 (trained on 2021-01) was expected to drift on February 2022"
    assert requests.get(f"{stack.serving_url}/model", timeout=10).json()["version"] == "1"

    # 2. The user switches the sensor on; the daemon evaluates it by itself.
    selector = {
        "repositoryLocationName": LOCATION,
        "repositoryName": REPOSITORY,
        "sensorName": sensor_name(SPEC),
    }
    started = stack.graphql(START_SENSOR, {"selector": selector})["startSensor"]
    assert started["__typename"] == "Sensor" and started["sensorState"]["status"] == "RUNNING", started
    wait_for(lambda: stack.inbox.messages, timeout=150, interval=1, what="the alert email")
    body = stack.inbox.messages[0].get_body(preferencelist=("plain",)).get_content()
    lines = [line for line in body.splitlines() if line.startswith("Threshold breach (>0.20): 2022-02-")]
    assert len(lines) == len(breaches)

    # 3. The retrain run the sensor requested succeeds and promotes v2.
    def retrain_finished():
        result = stack.graphql(RUNS, {"filter": {"tags": [{"key": RETRAIN_TAG, "value": SPEC.name}]}})
        runs = result["runsOrError"]["results"]
        return runs if runs and all(r["status"] in ("SUCCESS", "FAILURE", "CANCELED") for r in runs) else None

    (run,) = wait_for(retrain_finished, timeout=240, interval=3, what="the retrain run")
    assert run["status"] == "SUCCESS", run
    assert {"key": "dagster/partition", "value": breaches[-1]["timestamp"].strftime("%Y-%m-%d")} in run[
        "tags"
    ]
    registry = R.model_registry(stack.settings)
    assert registry.champion(SPEC.name) == "2"

    # 4. The prediction service was told to reload: it now serves v2.
    def serving_v2():
        return requests.get(f"{stack.serving_url}/model", timeout=10).json().get("version") == "2"

    wait_for(serving_v2, timeout=60, what="the prediction service to serve v2")
    answer = requests.post(
        f"{stack.serving_url}/predict",
        json={"PULocationID": 74, "DOLocationID": 168, "trip_distance": 2.5},
        timeout=10,
    ).json()
    assert answer["model_version"] == "2" and answer["duration_minutes"] > 0

    # 5. Another tick later: still one email, still one retrain.
    time.sleep(35)
    assert len(stack.inbox.messages) == 1
    assert len(retrain_finished() or []) == 1


@pytest.mark.browser
def test_the_ui_shows_the_graph_partitions_and_sensor(stack):
    from playwright.sync_api import expect

    with chromium() as browser:
        page = browser.new_page(viewport={"width": 1600, "height": 1000})
        page.goto(f"{stack.dagster_url}/asset-groups", wait_until="networkidle")
        for name in (
            C.TRIPS,
            C.DURATION_MODEL,
            C.PREDICTIONS,
            C.DRIFT_METRICS,
            C.DUMMY_METRICS,
            C.RETRAINED_MODEL,
        ):
            expect(page.get_by_text(name, exact=True).first).to_be_visible(timeout=30_000)
        page.screenshot(path=ARTIFACTS / "ui-asset-graph.png", full_page=True)

        page.goto(
            f"{stack.dagster_url}/assets/{SPEC.name}/{C.DRIFT_METRICS}?view=partitions",
            wait_until="networkidle",
        )
        # (after the end-to-end test: February's 28 days; run alone: none)
        done = len([r.as_dict() for r in DailyMetricsStore(MetricsDB(url=stack.metrics_url)).rows(SPEC.name)])
        try:
            expect(page.get_by_text(re.compile(r"^[\d,]+ Partitions Selected$"))).to_be_visible(
                timeout=30_000
            )
            expect(page.get_by_text(f"Materialized ({done})")).to_be_visible(timeout=30_000)
        finally:
            page.screenshot(path=ARTIFACTS / "ui-drift-partitions.png", full_page=True)
        if done:
            page.goto(
                f"{stack.dagster_url}/assets/{SPEC.name}/{C.DRIFT_METRICS}?view=events",
                wait_until="networkidle",
            )
            expect(page.get_by_text("prediction_drift").first).to_be_visible(timeout=30_000)
            page.screenshot(path=ARTIFACTS / "ui-drift-events.png", full_page=True)

        page.goto(f"{stack.dagster_url}/automation", wait_until="networkidle")
        expect(page.get_by_text(sensor_name(SPEC)).first).to_be_visible(timeout=30_000)
        page.screenshot(path=ARTIFACTS / "ui-automation.png", full_page=True)
