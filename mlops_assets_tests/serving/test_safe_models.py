"""Models are data: a crafted artifact in the registry runs nothing, anywhere.

An attacker who can write to the MLflow registry registers a version whose ``lin_reg.bin`` is
(a) a pickle whose ``__reduce__`` would create a file, or (b) a skops file holding a
pipeline with ``os.system`` inside, and moves ``champion`` to it. Real MLflow store, real
models (the session's v1 trained on 2022-01), the real service runtime and the code
location's registry resource; nothing is faked. The proof that nothing ran is the file the
payload would have written: it never appears. The service keeps v1 and says why.
"""

from __future__ import annotations

import json
import os
import pickle
import tempfile
from pathlib import Path

import pytest
import skops.io as sio
from django.test import Client
from sklearn.feature_extraction import DictVectorizer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer

from mlops_core.bundle import INFO_FILE, REFERENCE_FILE, ModelBundle, UnsafeModel
from mlops_core.registry import BUNDLE_ARTIFACT_PATH, MlflowRegistry

NAME = "green_taxi_duration"
TOKEN = "reload-token-for-tests"


class Payload:
    """Unpickling this creates ``marker``: what any code in a pickle could do."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (str(self.marker),))


def crafted_pickle(path: Path, marker: Path) -> None:
    path.write_bytes(pickle.dumps(Payload(marker)))


def crafted_skops(path: Path, marker: Path) -> None:
    evil = Pipeline([("dv", DictVectorizer()), ("run", FunctionTransformer(func=os.system))])
    sio.dump(evil, path)


CRAFTED = {"pickle": crafted_pickle, "skops with os.system": crafted_skops}


def crafted_bundle(folder: Path, good: ModelBundle, kind: str, marker: Path) -> Path:
    """A bundle folder like ModelBundle.save writes, with a crafted lin_reg.bin."""
    good.save(folder)
    CRAFTED[kind](folder / "lin_reg.bin", marker)
    return folder


def register_crafted(registry: MlflowRegistry, good: ModelBundle, kind: str, marker: Path) -> str:
    """Log a crafted bundle as a run's ``bundle/`` artifacts and register it: a new version."""
    import mlflow

    client = registry.client()
    with tempfile.TemporaryDirectory() as tmp:
        folder = crafted_bundle(Path(tmp) / BUNDLE_ARTIFACT_PATH, good, kind, marker)
        info = json.loads((folder / INFO_FILE).read_text())
        info["fingerprint"] = "crafted"
        (folder / INFO_FILE).write_text(json.dumps(info))
        with mlflow.start_run(experiment_id=registry.experiment_id(NAME)) as run:
            mlflow.log_artifacts(str(folder), artifact_path=BUNDLE_ARTIFACT_PATH)
        version = client.create_model_version(
            NAME, f"runs:/{run.info.run_id}/{BUNDLE_ARTIFACT_PATH}", run.info.run_id
        )
    return str(version.version)


@pytest.mark.parametrize("kind", sorted(CRAFTED))
def test_a_crafted_file_is_refused_and_runs_nothing(tmp_path, january_model, kind):
    marker = tmp_path / "pwned"
    folder = crafted_bundle(tmp_path / "bundle", january_model, kind, marker)
    assert (folder / REFERENCE_FILE).is_file()
    with pytest.raises(UnsafeModel, match=r"lin_reg\.bin"):
        ModelBundle.load(folder)
    assert not marker.exists()


def test_a_real_model_round_trips_as_skops(tmp_path, january_model):
    january_model.save(tmp_path / "m")
    assert (tmp_path / "m" / "lin_reg.bin").read_bytes()[:2] == b"PK"  # a zip (skops), not a pickle
    loaded = ModelBundle.load(tmp_path / "m")
    ref = january_model.reference
    assert (loaded.predict(ref) == january_model.predict(ref)).all()


@pytest.mark.parametrize("kind", sorted(CRAFTED))
def test_a_crafted_champion_never_runs_in_the_service_or_the_code_location(
    registry, service, monkeypatch, tmp_path, january_model, resources, kind
):
    monkeypatch.setenv("SERVING_RELOAD_TOKEN", TOKEN)
    service.start(background=False)
    client = Client()
    assert client.get("/ready").json()["model_version"] == "1"

    marker = tmp_path / "pwned"
    version = register_crafted(registry, january_model, kind, marker)
    registry.set_champion(NAME, version)
    assert registry.champion(NAME) == version

    # The service: the reload fails with the reason, v1 keeps serving.
    response = client.post("/reload", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    assert response.status_code == 503
    detail = response.json()["detail"]
    assert "reload failed, still serving version 1" in detail
    assert "UnsafeModel" in detail and "lin_reg.bin" in detail
    assert client.get("/ready").json() == {"ready": True, "model": NAME, "model_version": "1"}
    # A second try (and the poller) fails the same way: nothing ran in between.
    assert client.post("/reload", HTTP_AUTHORIZATION=f"Bearer {TOKEN}").status_code == 503

    # The code location's resource (what monitoring and promotion load with) refuses it too.
    code_location = resources["model_registry"]
    assert code_location.champion(NAME) == version
    with pytest.raises(UnsafeModel):
        code_location.load(NAME, version)
    assert not marker.exists()
