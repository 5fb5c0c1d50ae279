"""Ready means every worker is ready (issue 28): after ``/ready`` answers 200, no ``/predict``
meets a worker that is still loading its model.

Real gunicorn (``serving/gunicorn.conf.py``, four sync workers) serving the champion (v1,
trained on the real 2022-01 month) of a real MLflow store. The model loads slowly on purpose:
``SERVING_TEST_LOAD_DELAY_SECONDS`` makes every load sleep first, as a slow registry would,
and the workers load one after another (they take turns under ``sync.SharedState``'s lock),
so the last worker is ready seconds after the first. The test asks ``/ready`` from the
moment the port answers, and as soon as it says 200, sixteen clients post trips, each on a
new connection, until every worker has answered: every answer must be a 200 with the
champion's prediction. Before the fix, workers accepted connections while their model was
still loading, and these requests got 503s. Nothing is faked.
"""

from __future__ import annotations

import json
import threading
import time

import pytest
import requests

from mlops_assets_tests.serving.conftest import GunicornServer, install_registry, server_env

pytestmark = pytest.mark.e2e
TRIP = {"PULocationID": 74, "DOLocationID": 168, "trip_distance": 2.5}
WORKERS = 4
CLIENTS = 16


def access_log(server: GunicornServer) -> list[dict]:
    lines = [json.loads(x) for x in server.log().splitlines() if x.startswith('{"time"')]
    return [x for x in lines if "status" in x and "path" in x]


def first_ready(server: GunicornServer, timeout: float = 120) -> None:
    """Ask /ready (a new connection each time) until it answers 200."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if requests.get(server.url + "/ready", timeout=30).status_code == 200:
                return
        except requests.ConnectionError:
            pass
        time.sleep(0.01)
    raise AssertionError(f"/ready never answered 200:\n{server.log()[-3000:]}")


def test_after_ready_every_worker_answers_with_the_model(tmp_path, registry_template, january_model):
    home = tmp_path / "home"
    home.mkdir()
    install_registry(registry_template, home)
    env = server_env(
        home,
        SERVING_WORKERS=str(WORKERS),
        SERVING_TEST_LOAD_DELAY_SECONDS="2",
        TMPDIR=str(tmp_path),
    )
    server = GunicornServer(env, tmp_path / "gunicorn.log")
    expected = january_model.predict_one(TRIP)
    answers: list[tuple[int, str]] = []
    lock = threading.Lock()
    try:
        server.start(wait_ready=False)  # returns once /health answers
        first_ready(server)
        loading = WORKERS - server.workers_serving()
        # The premise: workers were still loading when /ready first said 200.
        assert loading > 0, "every worker had loaded already: the load was not slow enough"

        done = threading.Event()

        def client():
            while not done.is_set():
                try:  # no session: a new connection per request, as a load balancer's would be
                    r = requests.post(server.url + "/predict", json=TRIP, timeout=60)
                    answer = (r.status_code, r.text)
                except requests.RequestException as exc:
                    answer = (0, repr(exc))
                with lock:
                    answers.append(answer)

        threads = [threading.Thread(target=client) for _ in range(CLIENTS)]
        for t in threads:
            t.start()
        try:  # until every worker has answered a /predict (the last one loads ~6 s later)
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                pids = {e["pid"] for e in access_log(server) if e["path"] == "/predict"}
                if len(pids) == WORKERS:
                    break
                time.sleep(0.1)
        finally:
            done.set()
            for t in threads:
                t.join(60)
    finally:
        server.stop()

    failures = [a for a in answers if a[0] != 200]
    assert failures == [], f"{len(failures)} of {len(answers)} failed, e.g. {failures[:3]}"
    assert {json.loads(text)["duration_minutes"] for _, text in answers} == {expected}
    predicted = [e for e in access_log(server) if e["path"] == "/predict"]
    assert len({e["pid"] for e in predicted}) == WORKERS  # the late workers answered too
    assert {e["status"] for e in predicted} == {200}
    assert "WORKER TIMEOUT" not in server.log()


def test_a_load_longer_than_the_worker_timeout_does_not_get_the_worker_killed(tmp_path, registry_template):
    """A worker waiting for its model tells the master it is alive: a registry slower than
    SERVING_TIMEOUT delays readiness, it does not put the workers in a kill-and-restart loop."""
    home = tmp_path / "home"
    home.mkdir()
    install_registry(registry_template, home)
    env = server_env(
        home,
        SERVING_WORKERS="2",
        SERVING_TIMEOUT="2",
        SERVING_TEST_LOAD_DELAY_SECONDS="5",
        TMPDIR=str(tmp_path),
    )
    server = GunicornServer(env, tmp_path / "gunicorn.log")
    try:
        server.start()  # /ready, and both workers serving
        for _ in range(6):
            assert requests.post(server.url + "/predict", json=TRIP, timeout=30).status_code == 200
    finally:
        server.stop()
    assert "WORKER TIMEOUT" not in server.log()
    assert server.log().count("sleeping before loading") == 2  # one load per worker, no restarts
