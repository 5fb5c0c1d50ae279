"""Issue 11 ("Hardening"), the prediction service's part: one test per finding, each failing
before its fix.

1. a trip outside the model's trained domain (``ModelInfo.domain``) is a 422 naming the
   field, and the OpenAPI ``Trip`` schema shows the bounds and an example that works;
2. a batch over ``SERVING_MAX_BATCH_ROWS`` is refused before its rows are decoded;
3. ``GET /model`` does not say where the registry (or the model's folder) is;
4. every error answer is JSON with ``nosniff``, gunicorn's own ones included;
5. ``POST /predict`` takes only ``Content-Type: application/json`` (415 otherwise);
6. a bad Host header is one WARNING line a minute at most, without paths or stack;
7. ``GET /predict`` is a JSON 405 with an ``Allow`` header.

Real models trained on the real 2022-01 month (the default spec bounds ``trip_distance`` to
[0, 80] miles, so they carry that domain), the real Django stack in-process, and the real
gunicorn (``live``) for what only a server shows. Nothing is faked; spies only watch.
"""

from __future__ import annotations

import dataclasses
import io
import json
import logging
import random
import socket
import time

import pytest
import requests
from django.test import Client

from mlops_core.features import Features
from serving import inputs as inputs_module
from serving import logs as logs_module
from serving.inputs import TripInputs, count_items
from serving.logs import ThrottleSecurityLog

TRIP = {"PULocationID": 74, "DOLocationID": 168, "trip_distance": 2.5}
JS_MAX_SAFE_INTEGER = 2**53 - 1


def post(client: Client, body, content_type: str = "application/json"):
    data = body if isinstance(body, bytes | str) else json.dumps(body)
    return client.post("/predict", data=data, content_type=content_type)


def json_error(response, status: int, *needles: str) -> dict:
    assert response.status_code == status, response.content[:500]
    assert response["Content-Type"].startswith("application/json")
    assert response["X-Content-Type-Options"] == "nosniff"
    body = response.json()
    for needle in needles:
        assert needle in body["detail"], body["detail"]
    return body


# --- 1. the trained domain -------------------------------------------------------------------
def test_a_value_outside_the_trained_domain_is_a_422_and_the_schema_shows_the_bounds(
    served, client, january_model
):
    assert january_model.info.domain == {"trip_distance": [0.0, 80.0]}
    body = json_error(
        post(client, {**TRIP, "trip_distance": 1e9}),
        422,
        "field 'trip_distance': Input should be less than or equal to 80, got 1000000000.0",
    )
    assert body["errors"][0]["loc"] == ["body", "trip_distance"]
    json_error(post(client, [TRIP, {**TRIP, "trip_distance": 80.5}]), 422, "row 1: field 'trip_distance'")
    assert post(client, {**TRIP, "trip_distance": 80}).status_code == 200  # inclusive, like training

    doc = client.get("/openapi.json").json()
    trip = doc["components"]["schemas"]["Trip"]
    distance = trip["properties"]["trip_distance"]
    assert (distance["minimum"], distance["maximum"]) == (0, 80)
    for name in ("PULocationID", "DOLocationID"):  # exact in JavaScript (Swagger UI)
        assert trip["properties"][name]["maximum"] <= JS_MAX_SAFE_INTEGER
    assert trip["example"] == TRIP
    media = doc["paths"]["/predict"]["post"]["requestBody"]["content"]["application/json"]
    assert media["example"] == TRIP  # what "Try it out" sends: it must be accepted
    answer = post(client, media["example"])
    assert answer.status_code == 200 and answer.json()["duration_minutes"] > 0
    assert client.get("/model").json()["domain"] == {"trip_distance": [0.0, 80.0]}


def test_a_model_without_a_domain_keeps_the_general_bounds(
    service, client, january_model, tmp_path, monkeypatch
):
    """Bundles trained before the domain existed (``domain == {}``) still serve."""
    old = dataclasses.replace(january_model, info=dataclasses.replace(january_model.info, domain={}))
    old.save(tmp_path / "old")
    monkeypatch.setenv("MODEL_URI", str(tmp_path / "old"))
    service.start(background=False)
    assert post(client, {**TRIP, "trip_distance": 100.0}).status_code == 200
    json_error(post(client, {**TRIP, "trip_distance": 2e9}), 422, "less than or equal to 1000000000")
    trip = client.get("/openapi.json").json()["components"]["schemas"]["Trip"]
    assert trip["properties"]["trip_distance"]["maximum"] == 1e9


# --- 2. a batch too long is refused before it is decoded -------------------------------------
@pytest.fixture
def decode_spy(monkeypatch):
    """Records each decoding of a body (pydantic_core.from_json in serving.inputs) and each
    row validation (TripInputs._validate); both still run for real."""
    calls: list[str] = []
    real_from_json = inputs_module.pydantic_core.from_json
    real_validate = TripInputs._validate

    class Spy:
        @staticmethod
        def from_json(*args, **kwargs):
            calls.append("from_json")
            return real_from_json(*args, **kwargs)

    def validate(self, *args, **kwargs):
        calls.append("validate")
        return real_validate(self, *args, **kwargs)

    monkeypatch.setattr(inputs_module, "pydantic_core", Spy)
    monkeypatch.setattr(TripInputs, "_validate", validate)
    return calls


def test_a_batch_over_the_maximum_is_refused_before_its_rows_are_decoded(served, client, decode_spy):
    json_error(post(client, [{}] * 10_001), 413, "the batch has 10001 rows", "maximum is 10000")
    assert decode_spy == []  # before: the 10,001 objects were decoded first
    # 8 MB of empty objects (2.8 million): refused from the first 64 KB of bytes
    many = b"[" + b",".join([b"{}"] * 2_796_201) + b"]"
    json_error(post(client, many), 413, "more than 10000 rows")
    assert decode_spy == []
    # at the limit, the batch is decoded and served as before
    response = post(client, [TRIP] * 10_000)
    assert response.status_code == 200 and response.json()["count"] == 10_000
    assert decode_spy == ["from_json", "validate"]


def test_only_a_body_with_enough_commas_is_counted(served, client, monkeypatch):
    """Counting costs ~0.1 ms on 60 KB: a batch with fewer commas than the limit (so fewer
    items) is not counted (issue 28); one with as many is, and refused if too long."""
    counted = []
    real = inputs_module.count_items

    def spy(body, limit):
        counted.append(1)
        return real(body, limit)

    monkeypatch.setattr(inputs_module, "count_items", spy)
    padded = [{**TRIP, "note": " " * 20} for _ in range(1_000)]  # 60 KB, 3,999 commas
    assert post(client, padded).status_code == 200 and counted == []
    json_error(post(client, [{}] * 10_001), 413, "the batch has 10001 rows")  # 10,000 commas
    assert counted == [1]


def test_counting_items_agrees_with_a_json_parser():
    """``count_items`` reads structure from bytes; on real JSON it counts what json.loads does
    (strings holding brackets, commas, quotes and backslashes; nesting; any chunk boundary)."""
    rnd = random.Random(11)
    letters = ["a", '"', "\\", "[", "]", "{", "}", ",", " ", "é", "\n", "\\\\", '\\"']

    def value(depth=0):
        r = rnd.random()
        if depth > 3 or r < 0.3:
            return rnd.choice([1, 2.5, None, True, "x"])
        if r < 0.55:
            return "".join(rnd.choice(letters) for _ in range(rnd.randint(0, 10)))
        if r < 0.8:
            return [value(depth + 1) for _ in range(rnd.randint(0, 4))]
        return {"".join(rnd.choice(letters) for _ in range(4)): value(depth + 1) for _ in range(3)}

    chunk = inputs_module.FIRST_COUNT_CHUNK
    try:
        for size in (1, 2, 3, 7, 64):
            inputs_module.FIRST_COUNT_CHUNK = size
            for _ in range(400):
                items = [value() for _ in range(rnd.randint(0, 8))]
                body = json.dumps(items, ensure_ascii=rnd.random() < 0.5).encode()
                assert count_items(body, 10**6) == (len(items), True), body
                limit = rnd.randint(1, 8)
                count, exact = count_items(body, limit)
                assert count == len(items) if exact else len(items) >= count > limit, body
    finally:
        inputs_module.FIRST_COUNT_CHUNK = chunk


# --- 3. /model says what is served, not where the registry is --------------------------------
def test_model_does_not_show_where_the_registry_or_the_model_is(service, client, registry, isolated_env):
    service.start(background=False)  # the champion of the default store in MLOPS_HOME
    response = client.get("/model")
    info = response.json()
    assert (info["name"], info["version"], info["alias"]) == ("green_taxi_duration", "1", "champion")
    assert info["source"] == "models:/green_taxi_duration@champion"
    assert "registry" not in info
    text = response.content.decode()
    assert registry.uri() not in text and str(isolated_env) not in text and "sqlite" not in text
    schema = client.get("/openapi.json").json()["components"]["schemas"]["ModelOut"]
    assert "registry" not in schema["properties"]


def test_model_served_from_a_folder_does_not_show_the_folder(served, client, model_dir):
    response = client.get("/model")
    assert response.json()["source"] == "file:lin_reg.bin"
    assert str(model_dir) not in response.content.decode()


# --- 4. every error is JSON with nosniff -----------------------------------------------------
def test_django_and_ninja_errors_are_json_with_nosniff(served, client):
    json_error(client.post("/health"), 405, "POST", "/health")
    assert client.post("/health")["Allow"] == "GET"
    json_error(Client(HTTP_HOST="evil.example").get("/health"), 400, "SERVING_ALLOWED_HOSTS")
    json_error(client.get("/nope"), 404)
    response = client.get("/static/ninja/../../settings.py")
    assert response.status_code in (400, 404)
    json_error(response, response.status_code)


def raw_http(url: str, request: bytes) -> tuple[str, dict, bytes]:
    """Send ``request`` as it is on a new connection; (status line, headers, body)."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(request)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status, *lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, v in (x.split(":", 1) for x in lines)}
    return status, headers, body


@pytest.mark.e2e
def test_gunicorns_own_errors_are_json_with_nosniff(live):
    cases = [
        (b"GARBAGE\r\n\r\n", "400"),  # malformed request line
        (b"GET /" + b"a" * 5000 + b" HTTP/1.1\r\nHost: localhost\r\n\r\n", "400"),  # line too long
        (b"GET /health HTTP/1.1\r\nHost: localhost\r\nX-Big: " + b"b" * 9000 + b"\r\n\r\n", "431"),
        (b"GET /health HTTP/1.1\r\nHost: localhost\r\nBad Header: x\r\n\r\n", "400"),
    ]
    for request, status in cases:
        line, headers, body = raw_http(live.url, request)
        assert line.split()[1] == status, (line, body[:200])
        assert headers["content-type"] == "application/json", (line, body[:200])
        assert headers["x-content-type-options"] == "nosniff"
        assert int(headers["content-length"]) == len(body)
        assert json.loads(body)["detail"]
    assert requests.get(live.url + "/health", timeout=5).json() == {"status": "ok"}  # still serving


# --- 5. Content-Type ------------------------------------------------------------------------
@pytest.mark.parametrize(
    "content_type",
    [
        "application/x-www-form-urlencoded",
        "text/plain",
        "",
        "application/json; charset=latin-1",
        "multipart/form-data",
    ],
)
def test_predict_refuses_a_body_that_is_not_declared_json(served, client, content_type):
    json_error(post(client, TRIP, content_type), 415, "Content-Type: application/json")


@pytest.mark.parametrize(
    "content_type", ["application/json", "application/json; charset=utf-8", "Application/JSON"]
)
def test_predict_takes_json_with_or_without_charset(served, client, content_type):
    assert post(client, TRIP, content_type).status_code == 200


@pytest.mark.e2e
def test_predict_over_http_needs_the_json_content_type(live):
    raw = json.dumps(TRIP).encode()
    no_type = requests.post(live.url + "/predict", data=raw, timeout=10)  # requests sends none
    assert no_type.status_code == 415 and "no Content-Type" in no_type.json()["detail"]
    form = requests.post(live.url + "/predict", data={"PULocationID": "74"}, timeout=10)  # like curl -d
    assert form.status_code == 415 and "x-www-form-urlencoded" in form.json()["detail"]
    assert requests.post(live.url + "/predict", json=TRIP, timeout=10).status_code == 200


# --- 6. a bad Host header: one WARNING line a minute, no paths -------------------------------
@pytest.fixture
def security_log(monkeypatch):
    """The lines the service writes for Django's security events (its own handler, filter
    and formatter), with the throttle started afresh."""
    handler = logging.getLogger("django.security").handlers[0]
    throttle = next((f for f in handler.filters if isinstance(f, ThrottleSecurityLog)), None)
    if throttle is not None:
        throttle.reset()
    stream = io.StringIO()
    old = handler.setStream(stream)
    yield stream, throttle
    handler.setStream(old)
    if throttle is not None:
        throttle.reset()


def test_a_bad_host_is_one_warning_line_a_minute_without_paths(served, security_log, monkeypatch):
    stream, _ = security_log
    evil = Client(HTTP_HOST="evil.example")
    for _ in range(5):
        json_error(evil.get("/health"), 400, "SERVING_ALLOWED_HOSTS")
    lines = [json.loads(x) for x in stream.getvalue().splitlines()]
    assert len(lines) == 1, lines
    assert lines[0]["level"] == "WARNING" and "exception" not in lines[0]
    assert "SERVING_ALLOWED_HOSTS" in lines[0]["message"] and "evil.example" in lines[0]["message"]
    # a minute later, the next one is written with the count of those left out
    later = time.monotonic() + 61  # the throttle's window is a minute
    monkeypatch.setattr(logs_module.time, "monotonic", lambda: later)
    json_error(evil.get("/ready"), 400)
    lines = [json.loads(x) for x in stream.getvalue().splitlines()]
    assert len(lines) == 2 and "4 more like it" in lines[1]["message"]
    # a ../ path: Django's message names absolute paths of the server; the line does not
    Client().get("/static/ninja/../../settings.py")
    last = json.loads(stream.getvalue().splitlines()[-1])
    assert last["level"] == "WARNING" and "SuspiciousFileOperation" in last["message"]
    assert "/" not in last["message"] and "exception" not in last


@pytest.mark.e2e
def test_bad_hosts_over_http_do_not_flood_the_log(live):
    for _ in range(20):
        response = requests.get(live.url + "/health", headers={"Host": "flood.example"}, timeout=5)
        assert response.status_code == 400 and response.headers["X-Content-Type-Options"] == "nosniff"
    entries = [json.loads(x) for x in live.log().splitlines() if x.startswith('{"time"')]
    lines = [e for e in entries if e.get("logger", "").startswith("django.security")]
    assert 1 <= len(lines) <= 4, lines  # one a minute per worker (2), 20 requests
    for entry in lines:
        assert entry["level"] == "WARNING" and "exception" not in entry
        assert "/work" not in entry["message"] and "site-packages" not in entry["message"]


# --- 7. GET /predict --------------------------------------------------------------------------
def test_get_predict_is_a_json_405_with_allow(served, client):
    response = client.get("/predict")
    json_error(response, 405, "GET", "/predict", "POST")
    assert response["Allow"] == "POST"


@pytest.mark.e2e
def test_get_predict_over_http_is_a_json_405(live):
    response = requests.get(live.url + "/predict", timeout=5)
    assert response.status_code == 405 and response.headers["Allow"] == "POST"
    assert response.headers["Content-Type"].startswith("application/json")
    assert "POST" in response.json()["detail"]


def test_the_trip_rules_for_a_spec_without_a_model_show_its_bounds(service, client):
    """No model yet: the document shows the default spec's bounds (its filters)."""
    service.start(background=False)
    trip = client.get("/openapi.json").json()["components"]["schemas"]["Trip"]
    assert trip["properties"]["trip_distance"]["maximum"] == 80


def test_inputs_for_a_domain_are_compiled_once():
    features = Features(categorical=("PULocationID", "DOLocationID"), numerical=("trip_distance",))
    rules = TripInputs(features, 10)
    bounded = rules.for_domain({"trip_distance": [0.0, 80.0]})
    assert bounded is rules.for_domain({"trip_distance": [0.0, 80.0]})
    assert rules.for_domain({}) is rules and rules.for_domain(None) is rules
