"""The service as it runs in production: gunicorn with the project's config, over HTTP.

Real processes (``gunicorn -c serving/gunicorn.conf.py``, two workers, each in its own
process group on a free port, stopped with SIGTERM to the group and checked to leave no
process and no temporary folder behind), a real MLflow SQLite store with two versions
registered from models trained on the real 2022-01 and 2022-02 months, real trips from
2022-03. Nothing is faked. Several threads post trips while ``/reload`` swaps the champion
back and forth: no request may fail and every answer must be the prediction of the version
it names.
"""

from __future__ import annotations

import json
import threading
import time

import pytest
import requests

from mlops_assets_tests.serving.conftest import (
    LIVE_TOKEN,
    GunicornServer,
    install_registry,
    server_env,
    trip_payload,
)

pytestmark = pytest.mark.e2e
TOKEN = LIVE_TOKEN
NAME = "green_taxi_duration"


def reload(server) -> dict:
    response = requests.post(server.url + "/reload", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=60)
    assert response.status_code == 200, response.text
    return response.json()


def test_endpoints_over_http(live, january_model, march_trips):
    assert requests.get(live.url + "/health", timeout=5).json() == {"status": "ok"}
    assert requests.get(live.url + "/ready", timeout=5).json()["model_version"] == "1"
    assert requests.get(live.url + "/model", timeout=5).json()["alias"] == "champion"
    rows = march_trips.iloc[:1000]
    response = requests.post(
        live.url + "/predict", json=[trip_payload(r) for _, r in rows.iterrows()], timeout=10
    )
    assert response.status_code == 200
    assert response.headers["X-Model-Version"] == "1"
    assert response.json()["duration_minutes"] == january_model.predict(rows).tolist()
    doc = requests.get(live.url + "/openapi.json", timeout=5).json()
    assert doc["components"]["schemas"]["Trip"]["required"] == [
        "PULocationID",
        "DOLocationID",
        "trip_distance",
    ]


def test_bad_requests_over_http_are_json(live):
    cases = [
        (b"{oops", 400),
        (b'{"PULocationID": 1, "DOLocationID": 2, "trip_distance": -1}', 422),
        (json.dumps([{"PULocationID": 1, "DOLocationID": 2, "trip_distance": 1.0}] * 10_001), 413),
        (b"x" * (9 * 1024 * 1024), 413),  # over the 8 MiB default body limit
    ]
    for body, status in cases:
        response = requests.post(
            live.url + "/predict",
            data=body,
            headers={"Content-Type": "application/json"},
            timeout=30,
        )
        assert response.status_code == status, response.text[:300]
        assert response.headers["Content-Type"].startswith("application/json")
        assert "Traceback" not in response.text and response.json()["detail"]
    chunked = requests.post(
        live.url + "/predict", data=iter([b'{"PULocationID": 1, ', b"}"]), timeout=10
    )  # a generator body goes out chunked, without a Content-Length
    assert chunked.status_code == 411 and "Content-Length" in chunked.json()["detail"]
    assert requests.get(live.url + "/nope", timeout=5).json()["detail"].startswith("no such")
    wrong_host = requests.get(live.url + "/health", headers={"Host": "evil.example"}, timeout=5)
    assert wrong_host.status_code == 400


def test_access_log_is_json_and_never_holds_the_token(live):
    requests.post(live.url + "/reload", headers={"Authorization": "Bearer not-it"}, timeout=10)
    lines = [json.loads(x) for x in live.log().splitlines() if x.startswith('{"time"')]
    access = [x for x in lines if "status" in x]
    assert any(x["path"] == "/predict" and x["model_version"] == "1" for x in access)
    assert any(x["path"] == "/reload" and x["status"] == 401 for x in access)
    assert TOKEN not in live.log() and "not-it" not in live.log()


def test_reload_under_load_fails_no_request(live, january_model, february_model, march_trips):
    """4 clients post trips while the champion flips v1 -> v2 -> v1 ... through /reload."""
    rows = march_trips.iloc[:5]
    body = [trip_payload(r) for _, r in rows.iterrows()]
    expected = {
        "1": january_model.predict(rows).tolist(),
        "2": february_model.predict(rows).tolist(),
    }
    assert expected["1"] != expected["2"]
    stop = threading.Event()
    answers: list[tuple[int, dict | str]] = []
    lock = threading.Lock()

    def client():
        with requests.Session() as session:
            while not stop.is_set():
                try:
                    r = session.post(live.url + "/predict", json=body, timeout=30)
                    result = (r.status_code, r.json() if r.status_code == 200 else r.text)
                except Exception as exc:  # a failed request is a finding, not a crash
                    result = (0, repr(exc))
                with lock:
                    answers.append(result)

    threads = [threading.Thread(target=client) for _ in range(4)]
    for t in threads:
        t.start()
    champions = ["1"]
    try:
        time.sleep(0.5)
        for version in ["2", "1", "2", "1", "2", "1"]:
            live.registry.set_champion(NAME, version)
            result = reload(live)
            assert result["new_version"] == version and result["changed"]
            assert result["workers"] == {"total": 2, "updated": 2, "lagging": [], "failed": []}
            champions.append(version)
            # once /reload has answered, every worker serves the new champion
            for _ in range(10):
                r = requests.post(live.url + "/predict", json=body, timeout=10)
                assert r.json()["model_version"] == version
            time.sleep(0.3)
    finally:
        stop.set()
        for t in threads:
            t.join(60)
    failures = [a for a in answers if a[0] != 200]
    assert failures == [], failures[:5]
    assert len(answers) > 50
    seen = {a[1]["model_version"] for a in answers}
    assert seen == {"1", "2"} and seen <= set(champions)
    for _, answer in answers:  # each answer is exactly the prediction of the version it names
        assert answer["duration_minutes"] == expected[answer["model_version"]]


def test_starting_with_no_model_then_reloading(tmp_path, spec, january_model, registry_template):
    """No store at all: the service starts, says why it is not ready, and recovers on reload."""
    home = tmp_path / "home"
    home.mkdir()
    env = server_env(home, SERVING_RELOAD_TOKEN=TOKEN, SERVING_WORKERS="2", TMPDIR=str(tmp_path))
    server = GunicornServer(env, tmp_path / "gunicorn.log").start(wait_ready=False)
    try:
        for _ in range(4):  # both workers: up, and honest about it
            ready = requests.get(server.url + "/ready", timeout=5)
            assert ready.status_code == 503
            assert "no model yet" in ready.json()["detail"]
            trip = {"PULocationID": 1, "DOLocationID": 2, "trip_distance": 1.0}
            assert requests.post(server.url + "/predict", json=trip, timeout=5).status_code == 503
        install_registry(registry_template, home)
        result = reload(server)
        assert (result["old_version"], result["new_version"]) == (None, "1")
        assert result["workers"]["updated"] == result["workers"]["total"] == 2
        for _ in range(6):
            assert requests.get(server.url + "/ready", timeout=5).json()["model_version"] == "1"
    finally:
        server.stop()
    assert "Traceback" not in server.log()
