"""The compose stack's MLflow server and prediction service, as real processes.

Exercises the `mlflow` service's command from docker-compose.yml (`mlflow server` with MLflow's
authentication, backend store and users in the MLflow database that
config/postgres/init-databases.sh made, as its own role, artifacts proxied into a temporary
artifacts destination; health-checked with the compose healthcheck; its --allowed-hosts
accepting the compose host name), and the `serving` service's command and environment
(gunicorn, MODEL_URI = the champion, MLFLOW_TRACKING_URI = the server with the compose
credentials, its own empty bundle cache). The project's real assets then talk to the server:
`duration_model` trains on real 2022-01 trips and registers v1 (champion), the prediction
service loads it from the server, and `retrained_model` for the breach day 2022-01-31 trains
v2 on the trailing window, scores both on the same holdout, decides, records the decision in
MLflow tags and the metrics DB timeline (PostgreSQL), and, when it promotes, calls the
service's /reload with the compose token. Every client logs in with the credentials the
compose file gives user-code and serving (test_mlflow_auth.py: anonymous ones are refused).
MlflowClient against the server checks versions,
the `champion` alias and the decision tags; the bundle is downloaded from the server into an
empty cache. The code location gets the stack's values as ``Settings`` (metrics DB and
tracking URI, the service's URL; the reload token, a secret, through SERVING_RELOAD_TOKEN).

Replaced: Docker (host names become 127.0.0.1 and free ports, volumes temporary folders);
one MLflow worker and one gunicorn worker instead of two, to start faster.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import sys
from datetime import date
from pathlib import Path

import dagster as dg
import mlflow
import pandas as pd
import pytest
import requests
from mlflow import MlflowClient

from bench.support import stop_process
from bench.support import wait_for as wait_until
from mlops_assets import constants as C
from mlops_assets import resources as R
from mlops_assets.definitions import build_defs
from mlops_assets.lib.storage.engine import MetricsDB
from mlops_assets.training.registry_resource import ModelRegistry
from mlops_assets.training.store import TimelineStore
from mlops_assets_tests.helpers import default_spec, failure_message, load_trips
from mlops_assets_tests.stack.support import (
    REPO,
    SECRETS,
    compose,
    dotenv,
    mlflow_server,
    run_python_healthcheck,
    service_environment,
    start_listening,
)
from mlops_core.registry import CHAMPION

pytestmark = [pytest.mark.postgres, pytest.mark.e2e]

BIN = Path(sys.executable).parent
SPEC = default_spec()


def get(url: str, **kw) -> requests.Response | None:
    try:
        return requests.get(url, timeout=5, **kw)
    except requests.RequestException:
        return None


def materialize(defs, key: str, partition: str):
    return dg.materialize(
        list(defs.assets),
        selection=[dg.AssetKey([SPEC.name, key])],
        resources=defs.resources,
        partition_key=partition,
        raise_on_error=False,
    )


def test_models_registered_promoted_and_served_through_the_compose_mlflow_server(
    home, settings, stack_db, tmp_path, monkeypatch, report_figure
):
    config = compose(dotenv(**SECRETS))
    services = config["services"]
    # Nothing from the home's SQLite registry may leak in: trips stay, models and store go.
    for leftover in ("models", "mlartifacts", "mlflow.db"):
        path = home / leftover
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()

    artifacts = tmp_path / "mlartifacts"

    def mlflow_healthy(port: int) -> bool:  # the compose healthcheck, on this port
        return run_python_healthcheck(
            services["mlflow"]["healthcheck"]["test"], ("127.0.0.1:5000", f"127.0.0.1:{port}")
        )

    # The code location (in this process) logs in as the compose file has user-code do it.
    user_code = service_environment(config, "user-code")
    for name in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):
        monkeypatch.setenv(name, user_code[name])
    login = (user_code["MLFLOW_TRACKING_USERNAME"], user_code["MLFLOW_TRACKING_PASSWORD"])

    serving_env = service_environment(config, "serving")
    assert serving_env["MLFLOW_TRACKING_URI"] == "http://mlflow:5000"

    def prediction_service(port: int):
        cmd = [
            part.replace("/opt/dagster/app/gunicorn.conf.py", str(REPO / "serving" / "gunicorn.conf.py"))
            for part in services["serving"]["command"]
        ]
        env = {
            **serving_env,
            "SERVING_HOST": "127.0.0.1",
            "SERVING_PORT": str(port),
            "SERVING_WORKERS": "1",
            "MLFLOW_TRACKING_URI": tracking_uri,
            "MLOPS_HOME": str(tmp_path / "serving_home"),  # its own empty bundle cache, as in its container
            # the image installs `serving`; the dev venv's editable install may predate the package
            "PYTHONPATH": str(REPO),
            "PATH": os.environ["PATH"],
        }
        return [str(BIN / cmd[0]), *cmd[1:]], env

    settings = dataclasses.replace(settings, metrics_database_url=stack_db.metrics_url)
    server = service = None
    try:
        server, mlflow_port = start_listening(
            lambda port: mlflow_server(config, stack_db, port, artifacts),
            cwd=tmp_path,
            log_path=tmp_path / "mlflow.log",
            ready=mlflow_healthy,
            what="mlflow server's healthcheck",
        )
        tracking_uri = f"http://127.0.0.1:{mlflow_port}"
        settings = dataclasses.replace(settings, mlflow_tracking_uri=tracking_uri)
        # --allowed-hosts from the compose file: the compose host name passes, others do not
        # (/health is exempt from the check, so ask the REST API)
        api = f"{tracking_uri}/api/2.0/mlflow/experiments/search?max_results=1"
        assert get(api, headers={"Host": "mlflow:5000"}, auth=login).status_code == 200
        assert get(api, headers={"Host": "attacker.example:5000"}, auth=login).status_code == 403

        defs = build_defs([SPEC], R.build_resources(settings))
        trained = materialize(defs, C.DURATION_MODEL, "2022-01-01")
        assert trained.success, failure_message(trained)

        service, serving_port = start_listening(
            prediction_service,
            cwd=tmp_path,
            log_path=tmp_path / "serving.log",
            ready=lambda port: (r := get(f"http://127.0.0.1:{port}/health")) is not None and r.ok,
            what="the prediction service's /health",
        )
        serving_url = f"http://127.0.0.1:{serving_port}"

        def ready():
            assert service.poll() is None, (tmp_path / "serving.log").read_text()[-3000:]
            answer = get(f"{serving_url}/ready")
            return answer.json() if answer is not None and answer.status_code == 200 else None

        first = wait_until(ready, timeout=180, interval=1, what="the prediction service's /ready")
        assert first["model_version"] == "1"

        # The breach-day retrain, telling the service to reload as the compose stack does.
        assert user_code["SERVING_URL"] == "http://serving:8000"
        monkeypatch.setenv("SERVING_RELOAD_TOKEN", user_code["SERVING_RELOAD_TOKEN"])  # via dg.EnvVar
        settings = dataclasses.replace(settings, serving_url=serving_url, serving_token_set=True)
        defs = build_defs([SPEC], R.build_resources(settings))
        retrained = materialize(defs, C.RETRAINED_MODEL, "2022-01-31")
        assert retrained.success, failure_message(retrained)
        (event,) = retrained.get_asset_materialization_events()
        metadata = {k: v.value for k, v in event.event_specific_data.materialization.metadata.items()}
        after = ready()

        # What the server holds, read with MlflowClient against it.
        client = MlflowClient(tracking_uri=tracking_uri)
        versions = sorted(v.version for v in client.search_model_versions(f"name='{SPEC.name}'"))
        assert versions == ["1", "2"]
        v1, v2 = client.get_model_version(SPEC.name, "1"), client.get_model_version(SPEC.name, "2")
        champion = client.get_model_version_by_alias(SPEC.name, CHAMPION).version
        runs = [client.get_run(v.run_id).info.status for v in (v1, v2)]
        experiment = client.get_experiment_by_name(SPEC.name)
        # The champion's bundle, downloaded from the server into an empty cache.
        empty_cache = tmp_path / "empty-cache"
        downloaded = ModelRegistry(tracking_uri=tracking_uri, cache_dir=str(empty_cache)).load(
            SPEC.name, champion
        )
    finally:
        for proc in (service, server):
            if proc is not None:
                stop_process(proc)
        mlflow.set_tracking_uri(None)

    assert v1.tags["source"] == "monthly_training" and v1.tags["decision"] == "promoted"
    assert v2.tags["source"] == "retrain" and v2.tags["breach_day"] == "2022-01-31"
    promoted = metadata["decision"] == "promoted"
    assert promoted == (metadata["candidate_holdout_rmse"] <= metadata["champion_holdout_rmse"])
    assert v2.tags["decision"] == ("promoted" if promoted else "not_promoted")
    assert v2.tags["decision_reason"] == metadata["decision_reason"]
    assert v2.tags["champion_version"] == "1"
    assert float(v2.tags["candidate_rmse"]) == pytest.approx(metadata["candidate_holdout_rmse"], abs=1e-6)
    assert float(v2.tags["champion_rmse"]) == pytest.approx(metadata["champion_holdout_rmse"], abs=1e-6)
    assert champion == ("2" if promoted else "1")
    assert runs == ["FINISHED", "FINISHED"]
    # Artifacts went through the server's proxy into its artifacts destination...
    assert experiment.artifact_location.startswith("mlflow-artifacts:")
    stored = {p.name for p in artifacts.rglob("*") if p.is_file()}
    assert {"lin_reg.bin", "model.json", "reference.parquet"} <= stored
    # ...and come back out of it: the downloaded bundle is the one the run trained.
    assert (empty_cache / SPEC.name / f"v{champion}" / "lin_reg.bin").is_file()
    trained_here = R.model_registry(settings).load(SPEC.name, champion)  # the asset's own cache in MLOPS_HOME
    assert downloaded.info.fingerprint == trained_here.info.fingerprint
    trips = load_trips(SPEC, settings.trip_data_dir, "2022-02-01", "2022-02-02").head(500)
    pd.testing.assert_series_equal(
        pd.Series(downloaded.predict(trips)), pd.Series(trained_here.predict(trips)), check_names=False
    )
    # The metrics DB timeline (PostgreSQL) agrees with the registry.
    timeline = TimelineStore(MetricsDB(url=stack_db.metrics_url)).entries(SPEC.name)
    assert timeline[-1]["model_version"] == champion
    assert timeline[0]["effective_from"] >= date(2022, 2, 1)
    # The prediction service followed: the retrain's /reload (compose token) when it promoted.
    assert after["model_version"] == champion
    if promoted:
        assert "'new_version': '2'" in metadata["serving_reload"]
    else:
        assert "serving_reload" not in metadata
    # Everything is in the PostgreSQL backend store, with the server gone.
    store = MlflowClient(tracking_uri=stack_db.mlflow_url)
    assert str(store.get_model_version_by_alias(SPEC.name, CHAMPION).version) == champion  # int in SQL stores
    report_figure(
        f"retrain 2022-01-31 through the MLflow server: v2 {metadata['decision']} "
        f"({metadata['decision_reason']})"
    )
