"""A trip predicts exactly the same in the service as in training and monitoring.

Real trips (a week of 2022-03 the model never saw) sent as JSON to ``POST /predict``
(Django's test client; one request per trip for some, batches for all) against the model
trained on the real 2022-01 month, compared with ``ModelBundle.predict`` on the very same
rows of the trips frame: equal floats, not approximately equal. Also checks the request
frame has the trips frame's dtypes. Nothing is faked.

The last test compares the answers with what the Dagster ``predictions`` asset stored
(its per-day parquet files, column ``prediction``), for a batch and for single trips (which
the service scores without a frame, ``mlops_core.features.record_dict``).
"""

from __future__ import annotations

import json

import dagster as dg
import numpy as np
import pandas as pd
import pytest

from mlops_assets import constants as C
from mlops_assets.definitions import build_defs
from mlops_assets_tests.serving.conftest import trip_payload


@pytest.fixture
def served(service, model_dir, monkeypatch):
    monkeypatch.setenv("MODEL_URI", str(model_dir / "lin_reg.bin"))
    service.start(background=False)
    return service


def test_request_frames_have_the_trips_frame_dtypes(served, march_trips):
    columns = ["PULocationID", "DOLocationID", "trip_distance"]
    rows = [trip_payload(r) for _, r in march_trips.iloc[:3].iterrows()]
    frame = served.current.inputs.frame(rows)
    assert frame.dtypes.to_dict() == march_trips[columns].dtypes.to_dict()
    assert [str(t) for t in frame.dtypes] == ["Int64", "Int64", "float64"]


def test_every_trip_of_a_week_predicts_exactly_as_the_bundle_does(served, client, january_model, march_trips):
    expected = january_model.predict(march_trips)
    assert np.isfinite(expected).all() and len(march_trips) > 10_000
    got = []
    for start in range(0, len(march_trips), 10_000):
        chunk = march_trips.iloc[start : start + 10_000]
        body = [trip_payload(r) for r in chunk.to_dict("records")]
        response = client.post("/predict", data=json.dumps(body), content_type="application/json")
        assert response.status_code == 200, response.content[:500]
        got.extend(response.json()["duration_minutes"])
    assert got == expected.tolist()  # exact: same dtypes, same feature code, same floats


def test_single_trip_requests_predict_exactly_as_the_bundle_does(served, client, january_model, march_trips):
    sample = march_trips.sample(300, random_state=7)
    expected = january_model.predict(sample).tolist()
    got = []
    for record in sample.to_dict("records"):
        response = client.post(
            "/predict", data=json.dumps(trip_payload(record)), content_type="application/json"
        )
        got.append(response.json()["duration_minutes"])
    assert got == expected
    # and each row alone through the shared code gives the same as in the whole frame
    assert [january_model.predict(sample.iloc[[i]])[0] for i in range(20)] == expected[:20]


def test_the_service_answers_what_the_predictions_asset_stored(home, resources, service, client, spec):
    """v1 (trained on 2022-01 through the real assets) scores 2022-02-01..03 in the
    ``predictions`` asset; the service, serving the champion from the same MLflow store,
    answers exactly the stored ``prediction`` of every row."""
    defs = build_defs([spec], resources)
    keys = [dg.AssetKey([spec.name, name]) for name in (C.TRIPS, C.PREDICTIONS)]
    tags = {
        "dagster/asset_partition_range_start": "2022-02-01",
        "dagster/asset_partition_range_end": "2022-02-03",
    }
    assert dg.materialize(list(defs.assets), selection=keys, resources=defs.resources, tags=tags).success
    stored = pd.concat(
        pd.read_parquet(home / "assets" / spec.name / C.PREDICTIONS / f"2022-02-0{d}.parquet")
        for d in (1, 2, 3)
    )
    assert len(stored) > 5_000 and set(stored["model_version"]) == {"1"}

    service.start(background=False)  # MODEL_URI unset: the champion of the store in MLOPS_HOME
    body = [trip_payload(r) for r in stored.to_dict("records")]
    response = client.post("/predict", data=json.dumps(body), content_type="application/json")
    assert response.status_code == 200, response.content[:500]
    answer = response.json()
    assert answer["model_version"] == "1"
    assert answer["duration_minutes"] == stored["prediction"].tolist()
    # one trip per request takes the other path (no frame: features.record_dict): the same
    sample = stored.sample(300, random_state=3)
    for record, expected in zip(sample.to_dict("records"), sample["prediction"], strict=True):
        body = json.dumps(trip_payload(record))
        response = client.post("/predict", data=body, content_type="application/json")
        assert response.json()["duration_minutes"] == expected
