"""The model bundle: what monitoring and serving need from a trained model.

A ``ModelBundle`` is the sklearn pipeline (``DictVectorizer`` + regressor, pickled as
``lin_reg.bin`` like the original design), the ``Features`` it was trained with, its reference
data (the holdout's features, target and predictions, which monitoring compares each day
against) and a small ``model.json`` (``ModelInfo``). Training builds bundles
(``mlops_assets.training.model``); the registry stores and loads them (``mlops_core.registry``).
"""

from __future__ import annotations

import json
import math
import os
import pickle
import tempfile
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

from mlops_core import features as feats
from mlops_core.features import Features

DEFAULT_ARTIFACT = "lin_reg.bin"
REFERENCE_FILE = "reference.parquet"
INFO_FILE = "model.json"
PREDICTION = "prediction"


@dataclass
class Scores:
    rmse: float
    mae: float
    n: int

    @classmethod
    def of(cls, y_true: np.ndarray, y_pred: np.ndarray) -> Scores:
        err = np.asarray(y_pred, dtype="float64") - np.asarray(y_true, dtype="float64")
        if len(err) == 0:
            return cls(math.nan, math.nan, 0)
        return cls(float(np.sqrt(np.mean(err**2))), float(np.mean(np.abs(err))), len(err))


@dataclass
class ModelInfo:
    model_name: str
    algorithm: str
    features: Features
    target: str
    window_start: str  # first day of the training data (inclusive), YYYY-MM-DD
    window_end: str  # last day of the data (inclusive), YYYY-MM-DD
    holdout_start: str
    n_train: int
    n_holdout: int
    holdout: Scores
    mean_baseline: Scores
    fingerprint: str
    trained_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))
    version: str | None = None  # the registry's version, once registered

    def to_json(self) -> str:
        raw = asdict(self)
        raw["features"] = self.features.model_dump(mode="json")
        return json.dumps(raw, indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> ModelInfo:
        raw = json.loads(text)
        raw["features"] = Features.model_validate(raw["features"])
        raw["holdout"] = Scores(**raw["holdout"])
        raw["mean_baseline"] = Scores(**raw["mean_baseline"])
        return cls(**raw)


@dataclass
class ModelBundle:
    pipeline: object  # a fitted sklearn Pipeline (DictVectorizer + regressor)
    info: ModelInfo
    reference: pd.DataFrame  # holdout: features, target, prediction, pickup time

    @property
    def features(self) -> Features:
        return self.info.features

    def predict(self, df: pd.DataFrame) -> np.ndarray:
        return feats.predict(self.pipeline, df, self.features)

    def save(self, directory: Path, artifact: str = DEFAULT_ARTIFACT) -> Path:
        """Write the bundle into ``directory`` atomically (a temp folder renamed into place)."""
        directory.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=directory.name + ".", dir=directory.parent))
        with open(tmp / artifact, "wb") as fh:
            pickle.dump(self.pipeline, fh)
        self.reference.to_parquet(tmp / REFERENCE_FILE, index=False)
        (tmp / INFO_FILE).write_text(self.info.to_json())
        if directory.exists():
            old = directory.with_name(directory.name + f".old-{os.getpid()}")
            os.replace(directory, old)
            os.replace(tmp, directory)
            for child in old.iterdir():
                child.unlink()
            old.rmdir()
        else:
            os.replace(tmp, directory)
        return directory / artifact

    @classmethod
    def load(cls, directory: Path, artifact: str = DEFAULT_ARTIFACT) -> ModelBundle:
        info = ModelInfo.from_json((directory / INFO_FILE).read_text())
        with open(directory / artifact, "rb") as fh:
            pipeline = pickle.load(fh)  # our own artifact from our own store
        reference = pd.read_parquet(directory / REFERENCE_FILE)
        return cls(pipeline, info, reference)
