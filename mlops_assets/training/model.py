"""Training and evaluating a duration model, and the bundle it is saved as.

A ``ModelBundle`` is what monitoring and serving need from a trained model: the sklearn
pipeline (``DictVectorizer`` + regressor, pickled as ``lin_reg.bin`` like the original design),
the feature settings it was trained with, its reference data (the holdout's features, target
and predictions, which monitoring compares each day against) and a small ``model.json``.
"""

from __future__ import annotations

import hashlib
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
from sklearn.feature_extraction import DictVectorizer
from sklearn.linear_model import Lasso, LinearRegression, Ridge
from sklearn.pipeline import Pipeline

from mlops_assets import features as feats
from mlops_assets.data.schema import DURATION, PICKUP
from mlops_assets.specs import ModelSpec

REFERENCE_FILE = "reference.parquet"
INFO_FILE = "model.json"
ESTIMATORS = {"linear_regression": LinearRegression, "ridge": Ridge, "lasso": Lasso}
PREDICTION = "prediction"


class TrainingError(ValueError):
    """Training refused: too little data, or nothing to learn from."""


@dataclass(frozen=True)
class FeatureSettings:
    categorical: tuple[str, ...]
    numerical: tuple[str, ...]
    missing: str

    @classmethod
    def of(cls, spec: ModelSpec) -> FeatureSettings:
        f = spec.features
        return cls(tuple(f.categorical), tuple(f.numerical), f.missing)

    @property
    def columns(self) -> list[str]:
        return feats.columns(self)


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
    features: FeatureSettings
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
        return json.dumps(asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> ModelInfo:
        raw = json.loads(text)
        raw["features"] = FeatureSettings(
            **{k: tuple(v) if k != "missing" else v for k, v in raw["features"].items()}
        )
        raw["holdout"] = Scores(**raw["holdout"])
        raw["mean_baseline"] = Scores(**raw["mean_baseline"])
        return cls(**raw)


@dataclass
class ModelBundle:
    pipeline: Pipeline
    info: ModelInfo
    reference: pd.DataFrame  # holdout: features, target, prediction, pickup time

    @property
    def features(self) -> FeatureSettings:
        return self.info.features

    def predict(self, df: pd.DataFrame) -> np.ndarray:
        return feats.predict(self.pipeline, df, self.features)

    def save(self, directory: Path, artifact: str = "lin_reg.bin") -> Path:
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
    def load(cls, directory: Path, artifact: str = "lin_reg.bin") -> ModelBundle:
        info = ModelInfo.from_json((directory / INFO_FILE).read_text())
        with open(directory / artifact, "rb") as fh:
            pipeline = pickle.load(fh)  # our own artifact from our own store
        reference = pd.read_parquet(directory / REFERENCE_FILE)
        return cls(pipeline, info, reference)


def split_by_time(df: pd.DataFrame, train_fraction: float) -> tuple[pd.DataFrame, pd.DataFrame]:
    """First ``train_fraction`` of the rows by pickup time trains, the rest is the holdout."""
    ordered = df.sort_values(PICKUP, kind="stable").reset_index(drop=True)
    cut = round(len(ordered) * train_fraction)
    return ordered.iloc[:cut], ordered.iloc[cut:]


def split_by_days(df: pd.DataFrame, holdout_start: pd.Timestamp) -> tuple[pd.DataFrame, pd.DataFrame]:
    ordered = df.sort_values(PICKUP, kind="stable").reset_index(drop=True)
    is_holdout = ordered[PICKUP] >= holdout_start
    return ordered[~is_holdout], ordered[is_holdout]


def fingerprint(spec: ModelSpec, train: pd.DataFrame, holdout: pd.DataFrame) -> str:
    """Identifies (spec settings, training rows, holdout rows): equal inputs, equal model."""
    h = hashlib.sha256()
    h.update(
        json.dumps(
            {
                "features": asdict(FeatureSettings.of(spec)),
                "algorithm": spec.training.algorithm,
                "params": spec.training.params,
                "target": spec.target,
            },
            sort_keys=True,
        ).encode()
    )
    cols = [PICKUP, *spec.feature_columns, DURATION]
    for part in (train, holdout):
        h.update(pd.util.hash_pandas_object(part[cols], index=False).to_numpy().tobytes())
    return h.hexdigest()[:16]


def reference_frame(
    bundle_features: FeatureSettings, holdout: pd.DataFrame, predictions: np.ndarray
) -> pd.DataFrame:
    ref = holdout[[PICKUP, *bundle_features.columns, DURATION]].reset_index(drop=True).copy()
    ref[PREDICTION] = predictions
    return ref


def train(
    spec: ModelSpec,
    train_rows: pd.DataFrame,
    holdout_rows: pd.DataFrame,
    *,
    min_rows: int = 10,
) -> ModelBundle:
    """Fit the spec's pipeline on ``train_rows`` and score it on ``holdout_rows``."""
    settings = FeatureSettings.of(spec)
    fit_rows = train_rows[feats.scorable(train_rows, settings)]
    eval_rows = holdout_rows[feats.scorable(holdout_rows, settings)]
    if len(fit_rows) < min_rows:
        raise TrainingError(
            f"{spec.name}: only {len(fit_rows)} usable training rows, need at least {min_rows}"
        )
    if len(eval_rows) == 0:
        raise TrainingError(f"{spec.name}: the holdout has no usable rows")
    estimator = ESTIMATORS[spec.training.algorithm](**spec.training.params)
    pipeline = Pipeline([("dv", DictVectorizer()), ("model", estimator)])
    y_train = fit_rows[DURATION].to_numpy(dtype="float64")
    pipeline.fit(feats.to_dicts(fit_rows, settings), y_train)

    y_hold = eval_rows[DURATION].to_numpy(dtype="float64")
    pred_hold = feats.predict(pipeline, eval_rows, settings)
    info = ModelInfo(
        model_name=spec.name,
        algorithm=spec.training.algorithm,
        features=settings,
        target=spec.target,
        window_start=str(train_rows[PICKUP].min().date()),
        window_end=str(holdout_rows[PICKUP].max().date()),
        holdout_start=str(holdout_rows[PICKUP].min().date()),
        n_train=len(fit_rows),
        n_holdout=len(eval_rows),
        holdout=Scores.of(y_hold, pred_hold),
        mean_baseline=Scores.of(y_hold, np.full(len(y_hold), y_train.mean())),
        fingerprint=fingerprint(spec, train_rows, holdout_rows),
    )
    return ModelBundle(pipeline, info, reference_frame(settings, eval_rows, pred_hold))


def score(bundle: ModelBundle, rows: pd.DataFrame) -> Scores:
    """A bundle's scores on ``rows`` (only the rows it can score)."""
    usable = rows[feats.scorable(rows, bundle.features)]
    return Scores.of(usable[DURATION].to_numpy(dtype="float64"), bundle.predict(usable))
