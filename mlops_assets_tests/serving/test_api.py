"""The service's endpoints and its answers to bad input, through Django's test client.

Real model (trained on the real 2022-01 month, saved as a bundle folder and served from its
``lin_reg.bin`` path), the real Django settings, URL conf, middleware and ninja API; nothing
is faked except, in one test, a model whose ``predict`` raises (to see a 500 is JSON with
no traceback). The model loads synchronously (``start(background=False)``) instead of in
gunicorn's background thread.
"""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
from django.test import Client, override_settings

from mlops_assets.training import model as M
from mlops_assets_tests.serving.conftest import trip_payload
from mlops_core.features import Features
from serving import runtime

TRIP = {"PULocationID": 74, "DOLocationID": 168, "trip_distance": 2.5}


def post(client: Client, body, **extra):
    data = body if isinstance(body, bytes | str) else json.dumps(body)
    return client.post("/predict", data=data, content_type="application/json", **extra)


def assert_json_error(response, status: int, *needles: str) -> dict:
    assert response.status_code == status, response.content
    assert response["Content-Type"].startswith("application/json")
    body = response.json()
    assert isinstance(body["detail"], str) and body["detail"]
    assert "Traceback" not in response.content.decode()
    for needle in needles:
        assert needle in body["detail"], body["detail"]
    return body


# --- the endpoints ----------------------------------------------------------------------------
def test_health_answers_without_a_model(service, client, monkeypatch):
    monkeypatch.setenv("MODEL_URI", "/nowhere/lin_reg.bin")
    service.start(background=False)
    response = client.get("/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_ready_names_the_model(served, client, january_model):
    response = client.get("/ready")
    assert response.status_code == 200
    assert response.json() == {
        "ready": True,
        "model": "green_taxi_duration",
        "model_version": f"fingerprint:{january_model.info.fingerprint}",
    }


def test_model_describes_the_bundle(served, client, january_model, model_dir):
    info = january_model.info
    body = client.get("/model").json()
    assert body["name"] == "green_taxi_duration"
    assert body["version"] == f"fingerprint:{info.fingerprint}"  # not registered: no version
    assert body["alias"] is None
    # issue 11: which file, not where it is (was the absolute path); no "registry" field
    assert body["source"] == "file:lin_reg.bin"
    assert "registry" not in body
    assert body["training_window"] == {
        "start": "2022-01-01",
        "end": "2022-01-31",
        "holdout_start": info.holdout_start,
    }
    assert body["holdout_metrics"] == {
        "rmse": info.holdout.rmse,
        "mae": info.holdout.mae,
        "n": info.holdout.n,
    }
    assert body["mean_baseline_metrics"]["rmse"] == info.mean_baseline.rmse
    assert body["features"] == {
        "categorical": ["PULocationID", "DOLocationID"],
        "numerical": ["trip_distance"],
        "missing": "drop",
    }
    assert body["n_train"] == info.n_train and body["fingerprint"] == info.fingerprint


def test_predict_one_trip(served, client, january_model, march_trips):
    row = march_trips.iloc[0]
    response = post(client, trip_payload(row))
    assert response.status_code == 200
    body = response.json()
    version = f"fingerprint:{january_model.info.fingerprint}"
    assert body["model"] == "green_taxi_duration" and body["model_version"] == version
    assert response["X-Model-Version"] == version
    expected = january_model.predict(march_trips.iloc[:1])[0]
    assert body["duration_minutes"] == expected
    assert int(response["Content-Length"]) == len(response.content)


def test_predict_a_batch_keeps_the_order(served, client, january_model, march_trips):
    rows = march_trips.iloc[:500]
    response = post(client, [trip_payload(r) for _, r in rows.iterrows()])
    assert response.status_code == 200
    body = response.json()
    assert body["count"] == 500
    assert body["duration_minutes"] == january_model.predict(rows).tolist()


def test_an_empty_batch_gets_an_empty_answer(served, client):
    body = post(client, []).json()
    assert body["count"] == 0 and body["duration_minutes"] == []


def test_a_whole_number_written_as_a_float_is_an_integer(served, client):
    """JSON Schema's rule (and what pandas writes for an ID column with gaps)."""
    as_float = {**TRIP, "PULocationID": 74.0, "trip_distance": 2}
    assert post(client, as_float).json() == post(client, {**TRIP, "trip_distance": 2.0}).json()


def test_other_fields_of_a_trip_record_are_ignored(served, client):
    record = {**TRIP, "fare_amount": 12.5, "store_and_fwd_flag": "N", "VendorID": None}
    assert post(client, record).json() == post(client, TRIP).json()


def test_openapi_documents_the_loaded_models_fields(served, client):
    doc = client.get("/openapi.json").json()
    trip = doc["components"]["schemas"]["Trip"]
    assert trip["required"] == ["PULocationID", "DOLocationID", "trip_distance"]
    assert trip["properties"]["PULocationID"]["type"] == "integer"
    assert trip["properties"]["trip_distance"]["type"] == "number"
    assert trip["properties"]["trip_distance"]["minimum"] == 0
    body = doc["paths"]["/predict"]["post"]["requestBody"]["content"]["application/json"]
    assert body["schema"]["oneOf"][1]["maxItems"] == 10_000
    assert doc["paths"]["/reload"]["post"]["security"] == [{"ReloadToken": []}]
    assert set(doc["paths"]) == {"/predict", "/health", "/ready", "/model", "/reload"}


def test_docs_page_and_its_static_files_are_served(served, client):
    page = client.get("/docs")
    assert page.status_code == 200 and b"swagger" in page.content.lower()
    asset = client.get("/static/ninja/swagger-ui-bundle.js")
    assert asset.status_code == 200
    assert client.get("/static/ninja/../../settings.py").status_code in (400, 404)  # no escape


def test_a_models_own_features_shape_the_api(service, client, spec, trip_data_dir, tmp_path, monkeypatch):
    """A model with other features (and missing: zero): other fields, nulls accepted."""
    from mlops_assets_tests.helpers import load_trips

    other = spec.model_copy(
        update={
            "features": Features(
                categorical=("PULocationID",),
                numerical=("trip_distance", "passenger_count"),
                missing="zero",
            )
        }
    )
    frame = load_trips(other, trip_data_dir, "2022-01-01", "2022-01-15")
    train_rows, holdout_rows = M.split_by_time(frame, 0.5)
    bundle = M.train(other, train_rows, holdout_rows)
    bundle.save(tmp_path / "other")
    monkeypatch.setenv("MODEL_URI", str(tmp_path / "other"))  # a folder works too
    service.start(background=False)

    trip = client.get("/openapi.json").json()["components"]["schemas"]["Trip"]
    assert trip["required"] == ["PULocationID", "trip_distance", "passenger_count"]
    assert trip["properties"]["passenger_count"]["anyOf"][0]["type"] == "number"

    response = post(client, {"PULocationID": 74, "trip_distance": 2.5, "passenger_count": None})
    assert response.status_code == 200, response.content
    expected = bundle.predict(
        M.pd.DataFrame(
            {
                "PULocationID": M.pd.array([74], dtype="Int64"),
                "trip_distance": [2.5],
                "passenger_count": [np.nan],
            }
        )
    )[0]
    assert response.json()["duration_minutes"] == expected
    assert_json_error(post(client, TRIP), 422, "passenger_count")


# --- bad input --------------------------------------------------------------------------------
BAD_BODIES = [
    (b"", 400, ["empty"]),
    (b"   ", 400, ["empty"]),
    (b'{"PULocationID": 74,', 400, ["not valid JSON"]),
    (b"\xff\xfe{}", 400, ["not valid JSON"]),
    (b"[" * 5000 + b"]" * 5000, 400, ["not valid JSON"]),
    (b'"a trip"', 422, ["JSON object", "string"]),
    (b"42", 422, ["JSON object", "42"]),
    (b"null", 422, ["JSON object", "null"]),
    (b'{"PULocationID": 74, "DOLocationID": 168}', 422, ["'trip_distance' is required"]),
    (b"{}", 422, ["'PULocationID' is required", "'trip_distance' is required"]),
    (
        b'{"PULocationID": 74, "DOLocationID": 168, "trip_distance": "2.5"}',
        422,
        ["'trip_distance'", "valid number", "string"],
    ),
    (b'{"PULocationID": 74, "DOLocationID": 168, "trip_distance": NaN}', 422, ["'trip_distance'", "finite"]),
    (
        b'{"PULocationID": 74, "DOLocationID": 168, "trip_distance": Infinity}',
        422,
        ["'trip_distance'", "finite"],
    ),
    (b'{"PULocationID": 74, "DOLocationID": 168, "trip_distance": 1e400}', 422, ["'trip_distance'"]),
    (
        b'{"PULocationID": 74, "DOLocationID": 168, "trip_distance": -0.5}',
        422,
        ["'trip_distance'", "greater than or equal to 0", "-0.5"],
    ),
    (b'{"PULocationID": 74, "DOLocationID": 168, "trip_distance": 2e9}', 422, ["'trip_distance'"]),
    (b'{"PULocationID": true, "DOLocationID": 168, "trip_distance": 2.5}', 422, ["'PULocationID'", "true"]),
    (b'{"PULocationID": 74.5, "DOLocationID": 168, "trip_distance": 2.5}', 422, ["'PULocationID'", "74.5"]),
    (b'{"PULocationID": "74", "DOLocationID": 168, "trip_distance": 2.5}', 422, ["'PULocationID'"]),
    (b'{"PULocationID": null, "DOLocationID": 168, "trip_distance": 2.5}', 422, ["'PULocationID'", "null"]),
    (b'{"PULocationID": -1, "DOLocationID": 168, "trip_distance": 2.5}', 422, ["'PULocationID'"]),
    (
        b'{"PULocationID": 100000000000000000000000000000, "DOLocationID": 1, "trip_distance": 2.5}',
        422,
        ["'PULocationID'", "less than or equal"],
    ),
    (b'{"PULocationID": [74], "DOLocationID": 168, "trip_distance": 2.5}', 422, ["'PULocationID'", "array"]),
    (b"[1, 2]", 422, ["row 0: a trip must be a JSON object", "row 1"]),
    (
        b'[{"PULocationID": 1, "DOLocationID": 2, "trip_distance": 1.0},'
        b' {"PULocationID": 1, "DOLocationID": false, "trip_distance": 1.0}]',
        422,
        ["row 1: field 'DOLocationID'"],
    ),
]


@pytest.mark.parametrize(("body", "status", "needles"), BAD_BODIES, ids=[repr(b[0][:40]) for b in BAD_BODIES])
def test_bad_input_is_a_json_4xx_naming_the_problem(served, client, body, status, needles):
    assert_json_error(post(client, body), status, *needles)


def test_422_lists_each_problem_with_its_location(served, client):
    rows = [TRIP, {**TRIP, "trip_distance": -1}, {**TRIP, "PULocationID": "x"}]
    body = assert_json_error(post(client, rows), 422)
    assert [e["loc"] for e in body["errors"]] == [
        ["body", 1, "trip_distance"],
        ["body", 2, "PULocationID"],
    ]


def test_many_bad_rows_are_summarised(served, client):
    rows = [{**TRIP, "trip_distance": -1}] * 100
    body = assert_json_error(post(client, rows), 422, "and 80 more problem(s)")
    assert len(body["errors"]) == 20


def test_a_batch_over_the_maximum_is_413(service, model_dir, client, monkeypatch):
    monkeypatch.setenv("MODEL_URI", str(model_dir / "lin_reg.bin"))
    monkeypatch.setenv("SERVING_MAX_BATCH_ROWS", "5")
    service.start(background=False)
    assert post(client, [TRIP] * 5).status_code == 200
    assert_json_error(post(client, [TRIP] * 6), 413, "6 rows", "maximum is 5")
    doc = client.get("/openapi.json").json()
    schema = doc["paths"]["/predict"]["post"]["requestBody"]["content"]["application/json"]
    assert schema["schema"]["oneOf"][1]["maxItems"] == 5


def test_a_body_over_the_size_limit_is_413_before_it_is_read(served, client):
    with override_settings(DATA_UPLOAD_MAX_MEMORY_SIZE=2_000):
        assert post(client, [TRIP] * 10).status_code == 200
        assert_json_error(post(client, [TRIP] * 100), 413, "larger than 2000 bytes")


def test_the_default_body_limit_fits_the_largest_batch(served, client):
    from django.conf import settings

    record = {**TRIP, "trip_distance": 12.345678901234567, "fare_amount": 123.45, "tip_amount": 1.0}
    assert len(json.dumps([record] * 10_000)) < settings.DATA_UPLOAD_MAX_MEMORY_SIZE


def test_unknown_paths_and_methods_get_json_or_405(served, client):
    assert_json_error(client.get("/nope"), 404, "/nope")
    assert_json_error(client.get("/"), 404)
    assert client.get("/predict").status_code == 405
    assert client.post("/health").status_code == 405


def test_a_host_not_allowed_is_refused(served):
    response = Client(HTTP_HOST="evil.example").get("/health")
    assert_json_error(response, 400, "SERVING_ALLOWED_HOSTS")


def test_production_defaults(served):
    from django.conf import settings

    assert settings.DEBUG is False
    assert settings.DATABASES["default"]["ENGINE"] == "django.db.backends.dummy"  # none set
    assert settings.ALLOWED_HOSTS[:2] == ["localhost", "127.0.0.1"]  # + testserver in tests
    assert settings.SECRET_KEY and settings.SECRET_KEY_GENERATED  # DJANGO_SECRET_KEY unset
    assert settings.MIDDLEWARE == ["serving.middleware.HostAndHeadersMiddleware"]


@pytest.fixture
def request_log():
    """Records of Django's request logger (it does not propagate to pytest's caplog)."""
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append
    logger = logging.getLogger("django.request")
    logger.addHandler(handler)
    yield records
    logger.removeHandler(handler)


def test_an_internal_error_is_a_json_500_without_traceback(served, monkeypatch, request_log):
    def broken(self, trips):
        raise RuntimeError("model exploded at /secret/path")

    monkeypatch.setattr(runtime.LoadedModel, "predict", broken)  # a batch (a frame)
    monkeypatch.setattr(runtime.LoadedModel, "predict_one", broken)  # one trip (no frame)
    for sent in (TRIP, [TRIP, TRIP]):
        response = post(Client(raise_request_exception=False), sent)
        body = assert_json_error(response, 500, "internal error")
        assert "/secret/path" not in json.dumps(body)
    assert [r.status_code for r in request_log] == [500, 500]  # logged, with the stack trace
    assert all(r.exc_info is not None for r in request_log)


# --- no model ---------------------------------------------------------------------------------
def test_without_a_model_ready_and_predict_are_503_with_the_reason(
    service, client, tmp_path, monkeypatch, request_log
):
    monkeypatch.setenv("MODEL_URI", str(tmp_path / "missing" / "lin_reg.bin"))
    service.start(background=False)
    assert client.get("/health").status_code == 200
    ready = client.get("/ready")
    assert ready.status_code == 503
    assert ready.json()["ready"] is False
    assert "no model file at" in ready.json()["detail"] and "missing" in ready.json()["detail"]
    assert_json_error(post(client, TRIP), 503, "no model loaded")
    assert_json_error(client.get("/model"), 503, "no model loaded")
    # the document still shows the fields, from the spec the model will come from (if named)
    assert client.get("/openapi.json").status_code == 200
    assert request_log == []  # the expected 503s do not fill the error log


def test_default_source_with_an_empty_home_says_what_to_do(service, client):
    service.start(background=False)  # MODEL_URI unset: models:/green_taxi_duration@champion
    detail = client.get("/ready").json()["detail"]
    assert "no model yet" in detail and "mlflow.db" in detail and "does not exist" in detail
    trip = client.get("/openapi.json").json()["components"]["schemas"]["Trip"]
    assert trip["required"] == ["PULocationID", "DOLocationID", "trip_distance"]
    assert "from spec green_taxi_duration" in trip["description"]
