"""The registry behind a login: the compose `mlflow` service's authentication, as a real server.

Exercises `mlflow server --app-name basic-auth` with the `mlflow` service's command,
environment and configuration file from docker-compose.yml (config/mlflow/basic_auth.ini; the
users in the MLflow database that config/postgres/init-databases.sh made, reached as the
mlflow role through the PG* variables the compose file sets; the admin created from
MLFLOW_ADMIN_USERNAME / MLFLOW_ADMIN_PASSWORD), health-checked with the compose healthcheck
(/health needs no login). An anonymous client, and one with a wrong password, get 401 from the
REST API, the UI and the artifact proxy, and the project's registry class
(``mlops_core.registry.MlflowRegistry``, the prediction service's) cannot read the champion.
With the credentials the compose file gives the code server and the prediction service, the
same class registers a model (v1 of the session's trained model), makes it champion, reads the
champion back and downloads the bundle into an empty cache, predicting as the original.

Replaced: Docker (host names become 127.0.0.1, the artifacts volume a temporary folder); one
worker instead of two.
"""

from __future__ import annotations

import importlib.util

import mlflow
import pandas as pd
import pytest
import requests
import sqlalchemy as sa

from bench.support import stop_process
from mlops_assets_tests.helpers import default_spec, load_trips, register_champion
from mlops_assets_tests.stack.support import (
    SECRETS,
    compose,
    dotenv,
    mlflow_server,
    run_python_healthcheck,
    service_environment,
    start_listening,
)
from mlops_core import home as H
from mlops_core.registry import MlflowRegistry

pytestmark = [pytest.mark.postgres, pytest.mark.e2e]

SPEC = default_spec()
REFUSED = r"401|[Uu]nauthori[sz]ed|not authenticated"  # how MLflow's client reports a refused login


def test_the_registry_refuses_anonymous_clients_and_serves_the_compose_credentials(
    home, settings, stack_db, tmp_path, monkeypatch, report_figure
):
    if importlib.util.find_spec("flask_wtf") is None:
        pytest.fail(
            "MLflow's basic-auth app needs Flask-WTF, which `mlflow[auth]` installs: the project "
            "must depend on mlflow[auth] (pyproject.toml, requirements.lock), or the compose "
            "stack's MLflow server cannot start."
        )
    config = compose(dotenv(**SECRETS))
    services = config["services"]
    login = {}
    for name in ("user-code", "serving"):  # the compose file's MLflow clients
        env = service_environment(config, name)
        login[name] = (env["MLFLOW_TRACKING_USERNAME"], env["MLFLOW_TRACKING_PASSWORD"])
    assert login["user-code"] == login["serving"] == ("admin", SECRETS["MLFLOW_ADMIN_PASSWORD"])
    for name in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN"):
        monkeypatch.delenv(name, raising=False)

    # the model to register: v1 of the session's trained home, from its own (local) store
    original = MlflowRegistry(
        tracking_uri=H.default_tracking_uri(home), cache_dir=str(H.models_cache(home))
    ).load(SPEC.name, "1")

    def healthy(port: int) -> bool:  # the compose healthcheck, on this port
        test = services["mlflow"]["healthcheck"]["test"]
        return run_python_healthcheck(test, ("127.0.0.1:5000", f"127.0.0.1:{port}"))

    server = None
    try:
        server, port = start_listening(
            lambda port: mlflow_server(config, stack_db, port, tmp_path / "mlartifacts"),
            cwd=tmp_path,
            log_path=tmp_path / "mlflow.log",
            ready=healthy,
            what="mlflow server --app-name basic-auth",
        )
        url = f"http://127.0.0.1:{port}"
        paths = [
            "/api/2.0/mlflow/experiments/search?max_results=1",
            "/api/2.0/mlflow/registered-models/search",
            "/api/2.0/mlflow-artifacts/artifacts",
            "/",
        ]
        # anonymous, and with a wrong password: 401, a Basic challenge, nothing else
        for auth in (None, ("admin", "not-the-password"), ("nobody", SECRETS["MLFLOW_ADMIN_PASSWORD"])):
            for path in paths:
                answer = requests.get(url + path, auth=auth, timeout=10)
                assert answer.status_code == 401, (path, auth, answer.status_code)
                assert answer.headers["WWW-Authenticate"].startswith("Basic"), path
        # the project's registry class, without credentials, cannot tell who the champion is
        anonymous = MlflowRegistry(tracking_uri=url, cache_dir=str(tmp_path / "anonymous-cache"))
        with pytest.raises(Exception, match=REFUSED):
            anonymous.champion(SPEC.name)

        # with the compose credentials (the variables MLflow's client reads itself)
        user, password = login["serving"]
        monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", user)
        monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", password)
        for path in paths:
            assert requests.get(url + path, auth=(user, password), timeout=10).status_code == 200, path
        writer = MlflowRegistry(tracking_uri=url, cache_dir=str(tmp_path / "writer-cache"))
        registered = register_champion(SPEC, original, writer)
        reader = MlflowRegistry(tracking_uri=url, cache_dir=str(tmp_path / "reader-cache"))
        champion = reader.champion(SPEC.name)
        downloaded = reader.load(SPEC.name, champion)
        # the credentials are checked on each request, not remembered by the server
        monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "not-the-password")
        with pytest.raises(Exception, match=REFUSED):
            MlflowRegistry(tracking_uri=url, cache_dir=str(tmp_path / "c")).champion(SPEC.name)
    finally:
        if server is not None:
            stop_process(server)
        mlflow.set_tracking_uri(None)

    assert registered.created and registered.version == champion == "1"
    assert (tmp_path / "reader-cache" / SPEC.name / "v1").is_dir()  # downloaded, not copied
    trips = load_trips(SPEC, settings.trip_data_dir, "2022-02-01", "2022-02-02").head(500)
    pd.testing.assert_series_equal(
        pd.Series(downloaded.predict(trips)), pd.Series(original.predict(trips)), check_names=False
    )
    # Users live in the MLflow database, owned by the mlflow role; the password only hashed.
    engine = sa.create_engine(stack_db.mlflow_url)
    try:
        with engine.connect() as conn:
            users = conn.execute(sa.text("SELECT username, is_admin, password_hash FROM users")).all()
            owners = set(
                conn.execute(
                    sa.text(
                        "SELECT tableowner FROM pg_tables"
                        " WHERE tablename IN ('users', 'alembic_version_auth')"
                    )
                ).scalars()
            )
    finally:
        engine.dispose()
    assert [(u.username, u.is_admin) for u in users] == [("admin", True)]
    assert SECRETS["MLFLOW_ADMIN_PASSWORD"] not in users[0].password_hash
    assert owners == {stack_db.names["MLFLOW_DB_USER"]}
    report_figure(
        "MLflow basic-auth: anonymous and wrong-password clients get 401 on 4 paths; "
        "with the compose login MlflowRegistry registers, promotes and loads"
    )
