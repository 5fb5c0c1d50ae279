"""The model bundle: what monitoring and serving need from a trained model.

A ``ModelBundle`` is the sklearn pipeline (``DictVectorizer`` + regressor, in the file named
``lin_reg.bin`` like the original design), the ``Features`` it was trained with, its reference
data (the holdout's features, target and predictions, which monitoring compares each day
against) and a small ``model.json`` (``ModelInfo``). Training builds bundles
(``mlops_assets.training.model``); the registry stores and loads them (``mlops_core.registry``).

Models are data, not code: ``lin_reg.bin`` is a skops file (a zip of JSON and arrays), never
a pickle. Loading it refuses any type outside skops' trusted scikit-learn and NumPy types and
anything that is not a ``DictVectorizer`` + regressor pipeline, so a crafted artifact in the
registry (a pickle with a ``__reduce__``, say) runs nothing: it fails with ``UnsafeModel``.

Predictions are kept inside the target's trained range (``ModelInfo.target_range``: the
spec's duration bounds, 1 to 180 minutes by default), and ``ModelInfo.domain`` records the
range of each numerical feature the model was trained on (the service refuses values
outside it).
"""

from __future__ import annotations

import json
import math
import os
import tempfile
import zipfile
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mlops_core import features as feats
from mlops_core.features import Features

DEFAULT_ARTIFACT = "lin_reg.bin"
REFERENCE_FILE = "reference.parquet"
INFO_FILE = "model.json"
PREDICTION = "prediction"
# The regressors a bundle may hold (besides the DictVectorizer in front of them).
REGRESSORS = ("LinearRegression", "Ridge", "Lasso")


class UnsafeModel(ValueError):
    """A model file that is not a safe, loadable bundle; the message names the file and why."""


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
    # Numerical feature -> [min, max] it was trained on (None: open), from the spec's filters.
    domain: dict[str, list[float | None]] = field(default_factory=dict)
    # [min, max] of the target in training (the spec's duration bounds); None: unbounded.
    target_range: list[float | None] | None = None
    # Rows of the monitoring reference (a seeded sample of the holdout, at most the spec's
    # monitoring.reference_rows); None in models trained before the reference was capped.
    n_reference: int | None = None
    # The model's input columns (one-hot categories and numbers, the vectorizer's vocabulary);
    # None in models trained before it was recorded.
    n_columns: int | None = None
    # The model's RMSE per segment of its holdout (mlops_core.segments.holdout_segments), which
    # monitoring compares each day's segments with; None in models trained before it was stored.
    holdout_segments: dict | None = None

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
    reference: pd.DataFrame  # holdout (or its capped sample): features, target, prediction, pickup time

    @property
    def features(self) -> Features:
        return self.info.features

    def predict(self, df: pd.DataFrame) -> np.ndarray:
        return clip_to(feats.predict(self.pipeline, df, self.features), self.info.target_range)

    def predict_one(self, record: Mapping[str, Any]) -> float:
        """``predict`` of the one-row frame holding ``record`` (a feature -> Python scalar
        mapping, see ``features.record_dict``), without building the frame: the same number."""
        one = np.array([feats.predict_record(self.pipeline, record, self.features)], dtype="float64")
        return float(clip_to(one, self.info.target_range)[0])

    def save(self, directory: Path, artifact: str = DEFAULT_ARTIFACT) -> Path:
        """Write the bundle into ``directory`` atomically (a temp folder renamed into place)."""
        directory.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=directory.name + ".", dir=directory.parent))
        save_pipeline(self.pipeline, tmp / artifact)
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
        pipeline = load_pipeline(directory / artifact)
        reference = pd.read_parquet(directory / REFERENCE_FILE)
        return cls(pipeline, info, reference)


def clip_to(values: np.ndarray, bounds: list[float | None] | None) -> np.ndarray:
    """``values`` inside ``[lo, hi]`` (NaN stays NaN: an unscored row)."""
    if not bounds:
        return values
    lo, hi = bounds
    return np.clip(values, -np.inf if lo is None else lo, np.inf if hi is None else hi)


def save_pipeline(pipeline, path: Path) -> None:
    import skops.io as sio

    sio.dump(pipeline, path)


def load_pipeline(path: Path):
    """The pipeline in the skops file ``path``, loaded without running code from it: only
    skops' default trusted types, and only a ``DictVectorizer`` + regressor pipeline."""
    import skops.io as sio
    from sklearn.feature_extraction import DictVectorizer
    from sklearn.pipeline import Pipeline

    try:
        untrusted = sio.get_untrusted_types(file=path)
    except (zipfile.BadZipFile, KeyError, ValueError, json.JSONDecodeError) as exc:
        raise UnsafeModel(
            f"{path} is not a skops model file ({type(exc).__name__}: {exc}); models are loaded only "
            "from skops files (data), never unpickled"
        ) from None
    if untrusted:
        raise UnsafeModel(f"{path} holds types that are not trusted, refusing to load it: {untrusted}")
    pipeline = sio.load(path, trusted=[])
    steps = getattr(pipeline, "steps", None)
    if (
        not isinstance(pipeline, Pipeline)
        or len(steps) != 2
        or not isinstance(steps[0][1], DictVectorizer)
        or type(steps[1][1]).__name__ not in REGRESSORS
    ):
        raise UnsafeModel(f"{path} is not a DictVectorizer + regressor pipeline: {pipeline!r}")
    return pipeline
