"""Where the model comes from (``MODEL_URI``) and ``POST /reload``, via Django's test client.

Real models trained on the real 2022-01 and 2022-02 months, registered in a real MLflow
SQLite store (once per session, then copied into each test's MLOPS_HOME: the default store
the service reads); nothing is faked. One test holds a request inside ``predict`` (a
wrapper that waits on an event) to show that a request in flight finishes on the model it
started with while a reload swaps.
"""

from __future__ import annotations

import json
import shutil
import threading
import time

import pytest
from django.test import Client

from mlops_assets_tests.helpers import register_champion
from mlops_assets_tests.serving.conftest import copy_bundle, home_registry, trip_payload
from serving import runtime

TOKEN = "reload-token-for-tests"
AUTH = {"HTTP_AUTHORIZATION": f"Bearer {TOKEN}"}
NAME = "green_taxi_duration"


def predict(client: Client, rows) -> dict:
    body = [trip_payload(r) for _, r in rows.iterrows()]
    response = client.post("/predict", data=json.dumps(body), content_type="application/json")
    assert response.status_code == 200, response.content
    return response.json()


def reload(client: Client, **headers):
    return client.post("/reload", **headers)


# --- sources ----------------------------------------------------------------------------------
def test_default_source_is_the_champion_in_the_default_store(
    registry, service, client, january_model, march_trips
):
    service.start(background=False)
    info = client.get("/model").json()
    assert (info["name"], info["version"], info["alias"]) == (NAME, "1", "champion")
    assert info["source"] == f"models:/{NAME}@champion"
    # issue 11: /model no longer says where the registry is (it had "registry": the store's URI)
    assert "registry" not in info and registry.uri() not in json.dumps(info)
    assert info["holdout_metrics"]["rmse"] == january_model.info.holdout.rmse
    rows = march_trips.iloc[:200]
    body = predict(client, rows)
    assert body["model_version"] == "1"
    assert body["duration_minutes"] == january_model.predict(rows).tolist()


def test_a_version_uri_pins_that_version(registry, service, client, february_model, march_trips, monkeypatch):
    monkeypatch.setenv("MODEL_URI", f"models:/{NAME}/2")
    service.start(background=False)
    info = client.get("/model").json()
    assert (info["version"], info["alias"]) == ("2", None)
    assert info["training_window"]["start"] == "2022-02-01"
    rows = march_trips.iloc[:50]
    assert predict(client, rows)["duration_minutes"] == february_model.predict(rows).tolist()


def test_any_alias_can_be_served(registry, service, client, monkeypatch):
    registry.client().set_registered_model_alias(NAME, "challenger", "2")
    monkeypatch.setenv("MODEL_URI", f"models:/{NAME}@challenger")
    service.start(background=False)
    assert client.get("/ready").json()["model_version"] == "2"
    assert client.get("/model").json()["alias"] == "challenger"


def test_a_registry_model_not_in_the_cache_is_downloaded(registry, service, client, isolated_env):
    shutil.rmtree(isolated_env / "models")  # the bundle cache registering filled
    service.start(background=False)
    assert client.get("/ready").json()["model_version"] == "1"
    assert (isolated_env / "models" / NAME / "v1" / "lin_reg.bin").is_file()


@pytest.mark.parametrize(
    ("uri", "needles"),
    [
        (f"models:/{NAME}@nobody", ["no model yet", "'nobody' alias"]),
        (f"models:/{NAME}/7", ["cannot load", "version 7"]),
        ("models:/just-a-name", ["not a model URI", "models:/<name>@<alias>"]),
        ("models:/other_model@champion", ["no registered model 'other_model'"]),
    ],
)
def test_a_registry_source_that_cannot_load_says_why(registry, service, client, monkeypatch, uri, needles):
    monkeypatch.setenv("MODEL_URI", uri)
    service.start(background=False)
    response = client.get("/ready")
    assert response.status_code == 503
    for needle in needles:
        assert needle in response.json()["detail"], response.json()["detail"]


def test_a_bundle_folder_missing_its_files_says_which(service, client, model_dir, monkeypatch):
    (model_dir / "model.json").unlink()
    monkeypatch.setenv("MODEL_URI", str(model_dir / "lin_reg.bin"))
    service.start(background=False)
    detail = client.get("/ready").json()["detail"]
    assert "not model.json" in detail and "ModelBundle.save" in detail


def test_a_registry_password_never_shows(service, client, monkeypatch, caplog):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://serving:hunter2@127.0.0.1:9/")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "2")
    service.start(background=False)
    response = client.get("/ready")
    assert response.status_code == 503
    detail = response.json()["detail"]
    assert "cannot read the MLflow registry at http://serving:***@127.0.0.1:9/" in detail
    assert "hunter2" not in detail and "hunter2" not in caplog.text


# --- reload -----------------------------------------------------------------------------------
def test_reload_is_refused_when_no_token_is_configured(registry, service, client):
    service.start(background=False)
    response = reload(client, HTTP_AUTHORIZATION="Bearer anything")
    assert response.status_code == 403
    assert "SERVING_RELOAD_TOKEN is not set" in response.json()["detail"]


@pytest.mark.parametrize(
    "header",
    [None, "Bearer wrong", f"Basic {TOKEN}", f"Bearer {TOKEN}x", "Bearer", "Bearer tökén"],
)
def test_reload_needs_the_token(registry, service, client, monkeypatch, header):
    monkeypatch.setenv("SERVING_RELOAD_TOKEN", TOKEN)
    service.start(background=False)
    response = reload(client, **({"HTTP_AUTHORIZATION": header} if header else {}))
    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Bearer")
    assert "Authorization: Bearer" in response.json()["detail"]


def test_reload_swaps_in_the_new_champion(
    registry, service, client, monkeypatch, february_model, march_trips, caplog
):
    monkeypatch.setenv("SERVING_RELOAD_TOKEN", TOKEN)
    service.start(background=False)
    registry.set_champion(NAME, "2")
    assert client.get("/ready").json()["model_version"] == "1"  # until told

    response = reload(client, **AUTH)
    assert response.status_code == 200, response.content
    assert response.json() == {
        "model": NAME,
        "alias": "champion",
        "old_version": "1",
        "new_version": "2",
        "changed": True,
        "workers": {"total": 1, "updated": 1, "lagging": [], "failed": []},
    }
    rows = march_trips.iloc[:100]
    body = predict(client, rows)
    assert body["model_version"] == "2"
    assert body["duration_minutes"] == february_model.predict(rows).tolist()

    again = reload(client, **AUTH).json()
    assert (again["old_version"], again["new_version"], again["changed"]) == ("2", "2", False)
    assert TOKEN not in caplog.text


def test_a_failed_reload_keeps_the_old_model(registry, service, client, monkeypatch):
    monkeypatch.setenv("SERVING_RELOAD_TOKEN", TOKEN)
    service.start(background=False)
    registry.client().delete_registered_model_alias(NAME, "champion")
    response = reload(client, **AUTH)
    assert response.status_code == 503
    assert "reload failed, still serving version 1" in response.json()["detail"]
    assert "no 'champion' alias" in response.json()["detail"]
    assert client.get("/ready").json() == {"ready": True, "model": NAME, "model_version": "1"}


def test_reload_brings_a_model_to_a_service_that_had_none(
    spec, service, client, monkeypatch, january_model, isolated_env
):
    monkeypatch.setenv("SERVING_RELOAD_TOKEN", TOKEN)
    service.start(background=False)
    assert client.get("/ready").status_code == 503
    register_champion(spec, copy_bundle(january_model), home_registry(isolated_env))
    body = reload(client, **AUTH).json()
    assert (body["old_version"], body["new_version"], body["changed"]) == (None, "1", True)
    assert client.get("/ready").status_code == 200


def test_a_request_in_flight_finishes_on_the_model_it_started_with(
    registry, service, monkeypatch, january_model, february_model, march_trips
):
    monkeypatch.setenv("SERVING_RELOAD_TOKEN", TOKEN)
    service.start(background=False)
    inside, release = threading.Event(), threading.Event()
    original = runtime.LoadedModel.predict

    def held(self, df):
        if self.version == "1":
            inside.set()
            assert release.wait(30)
        return original(self, df)

    monkeypatch.setattr(runtime.LoadedModel, "predict", held)
    rows = march_trips.iloc[:20]
    answers = {}
    worker = threading.Thread(target=lambda: answers.update(predict(Client(), rows)))
    worker.start()
    assert inside.wait(30)
    registry.set_champion(NAME, "2")
    assert reload(Client(), **AUTH).json()["new_version"] == "2"  # swapped meanwhile
    assert predict(Client(), rows)["model_version"] == "2"
    release.set()
    worker.join(30)
    assert answers["model_version"] == "1"
    assert answers["duration_minutes"] == january_model.predict(rows).tolist()
    assert answers["duration_minutes"] != february_model.predict(rows).tolist()


def test_polling_follows_the_alias(registry, service, monkeypatch):
    monkeypatch.setenv("MODEL_POLL_SECONDS", "1")
    service.start()  # the background thread, as under gunicorn
    deadline = time.monotonic() + 30
    while service.current is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert service.current is not None and service.current.version == "1"
    registry.set_champion(NAME, "2")
    while service.current.version != "2" and time.monotonic() < deadline:
        time.sleep(0.05)
    assert service.current.version == "2"
