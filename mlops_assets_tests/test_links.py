"""Links in asset metadata: the day's Evidently report and the history chart as URLs when
``REPORTS_URL`` says where ``MLOPS_HOME/reports`` is served, and the MLflow model version's
page. Real components: a real monitoring run on the real data (the session's trained v1), and
Python's own static HTTP server (what ``make reports`` runs) serving the reports folder; the
MLflow URLs are built without a server (no request is made to them).
"""

import sys

import dagster as dg
import requests

from bench.support import free_port, start_process, stop_process, wait_for
from mlops_assets import constants as C
from mlops_assets.definitions import build_defs
from mlops_assets.resources import build_resources
from mlops_assets.settings import Settings
from mlops_assets_tests.helpers import default_spec
from mlops_core.registry import MlflowRegistry

SPEC = default_spec()


def test_settings_read_the_link_addresses():
    settings = Settings.from_env(
        {
            "MLOPS_HOME": "/tmp/x",
            "REPORTS_URL": "http://reports.example:8001/",
            "MLFLOW_UI_URL": "http://m:5000",
        }
    )
    assert (settings.reports_url, settings.mlflow_ui_url) == ("http://reports.example:8001/", "http://m:5000")
    resources = build_resources(settings)
    assert resources[C.REPORTS].base_url == "http://reports.example:8001/"
    assert resources[C.MODEL_REGISTRY].ui_url == "http://m:5000"
    unset = build_resources(Settings.from_env({"MLOPS_HOME": "/tmp/x"}))
    assert unset[C.REPORTS].base_url is None and unset[C.MODEL_REGISTRY].ui_url is None


def test_the_mlflow_version_link_comes_from_the_ui_address_or_an_http_tracking_uri(tmp_path):
    server = MlflowRegistry(tracking_uri="https://writer:s3cret@mlflow.example/", cache_dir=str(tmp_path))
    assert (
        server.version_url(SPEC.name, "2") == "https://mlflow.example/#/models/green_taxi_duration/versions/2"
    )
    local = MlflowRegistry(tracking_uri=f"sqlite:///{tmp_path}/mlflow.db", cache_dir=str(tmp_path))
    assert local.version_url(SPEC.name, "2") is None  # a local store has no UI to link to
    with_ui = MlflowRegistry(
        tracking_uri=f"sqlite:///{tmp_path}/mlflow.db",
        cache_dir=str(tmp_path),
        ui_url="http://127.0.0.1:5000",
    )
    assert (
        with_ui.version_url(SPEC.name, "3") == "http://127.0.0.1:5000/#/models/green_taxi_duration/versions/3"
    )


def test_a_days_report_is_a_link_that_the_static_server_serves(home, trip_data_dir, tmp_path):
    port = free_port()
    base = f"http://127.0.0.1:{port}/"
    settings = Settings.for_home(home, trip_data_dir=trip_data_dir, reports_url=base)
    defs = build_defs([SPEC], build_resources(settings))
    monitoring = [
        dg.AssetKey([SPEC.name, n]) for n in (C.TRIPS, C.PREDICTIONS, C.DRIFT_METRICS, C.DUMMY_METRICS)
    ]
    history = dg.AssetKey([SPEC.name, C.MONITORING_HISTORY])
    result = dg.materialize(
        list(defs.assets), selection=monitoring, resources=defs.resources, partition_key="2022-02-01"
    )
    assert result.success
    (drift,) = [m for m in result.asset_materializations_for_node(f"{SPEC.name}__{C.DRIFT_METRICS}")]
    report = drift.metadata["report"]
    assert isinstance(report, dg.UrlMetadataValue) and report.url == f"{base}{SPEC.name}/2022-02-01.html"
    result = dg.materialize(list(defs.assets), selection=[history], resources=defs.resources)
    (chart,) = result.asset_materializations_for_node(f"{SPEC.name}__{C.MONITORING_HISTORY}")
    assert chart.metadata["chart_file"].url == f"{base}{SPEC.name}/monitoring_history.png"

    (home / "reports").mkdir(exist_ok=True)
    server = start_process(
        [
            sys.executable,
            "-m",
            "http.server",
            str(port),
            "--bind",
            "127.0.0.1",
            "--directory",
            str(home / "reports"),
        ],
        cwd=tmp_path,
        log_path=tmp_path / "http.log",
    )
    try:

        def get(url):
            try:
                return requests.get(url, timeout=5)
            except requests.ConnectionError:
                return None

        page = wait_for(lambda: get(report.url), timeout=30, what="the static server")
        assert page.status_code == 200
        # The server sends no charset; the page declares UTF-8 where a browser looks for it.
        text = page.content.decode("utf-8")
        assert '<meta charset="utf-8">' in text[:1024].lower()
        assert "<title>green_taxi_duration · 2022-02-01 · model v1" in text
        png = requests.get(chart.metadata["chart_file"].url, timeout=5)
        assert png.status_code == 200 and png.content.startswith(b"\x89PNG")
    finally:
        stop_process(server)
