"""Training and evaluating a duration model; the result is a ``ModelBundle`` (``mlops_core.bundle``)."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pandas as pd
from sklearn import linear_model
from sklearn.feature_extraction import DictVectorizer
from sklearn.pipeline import Pipeline

from mlops_core import features as feats
from mlops_core.bundle import PREDICTION, ModelBundle, ModelInfo, Scores, clip_to
from mlops_core.features import Features
from mlops_core.schema import DURATION, PICKUP
from mlops_core.segments import ZoneLookup, holdout_segments, tlc_zones
from mlops_core.specs import ALGORITHMS, Bounds, ModelSpec

# training.algorithm -> the scikit-learn estimator class (the spec validator checks its params)
ESTIMATORS = {name: getattr(linear_model, cls) for name, cls in ALGORITHMS.items()}


class TrainingError(ValueError):
    """Training refused: too little data, or nothing to learn from."""


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
    """Identifies (spec settings, training rows, holdout rows): equal inputs, equal model
    (and equal reference sample: the cap is part of it)."""
    h = hashlib.sha256()
    h.update(
        json.dumps(
            {
                "features": spec.features.model_dump(mode="json"),
                "algorithm": spec.training.algorithm,
                "params": spec.training.params,
                "target": spec.target,
                "filters": {c: b.model_dump() for c, b in sorted(spec.filters.items())},
                "format": "skops",
                "reference_rows": spec.monitoring.reference_rows,
            },
            sort_keys=True,
        ).encode()
    )
    cols = [PICKUP, *spec.feature_columns, DURATION]
    for part in (train, holdout):
        h.update(pd.util.hash_pandas_object(part[cols], index=False).to_numpy().tobytes())
    return h.hexdigest()[:16]


def bounds_of(bounds: Bounds | None) -> list[float | None] | None:
    return None if bounds is None else [bounds.min, bounds.max]


# The reference sample's seed: the same holdout always gives the same reference.
REFERENCE_SEED = 20210101


def reference_frame(
    bundle_features: Features, holdout: pd.DataFrame, predictions: np.ndarray, max_rows: int | None = None
) -> pd.DataFrame:
    """Monitoring's reference: the holdout's features, actual duration and predictions, or a
    seeded sample of ``max_rows`` of its rows (kept in pickup order) when it has more."""
    ref = holdout[[PICKUP, *bundle_features.columns, DURATION]].reset_index(drop=True).copy()
    ref[PREDICTION] = predictions
    return sample_reference(ref, max_rows)


def sample_reference(reference: pd.DataFrame, max_rows: int | None) -> pd.DataFrame:
    """``reference`` itself, or a seeded sample of ``max_rows`` of its rows in their order."""
    if max_rows is None or len(reference) <= max_rows:
        return reference
    rng = np.random.default_rng(REFERENCE_SEED)
    rows = np.sort(rng.choice(len(reference), size=max_rows, replace=False))
    return reference.iloc[rows].reset_index(drop=True)


def with_32bit_indices(matrix):
    """``matrix`` (CSR) with 32-bit ``indices`` and ``indptr`` when its size allows them."""
    limit = np.iinfo(np.int32).max
    if matrix.nnz > limit or max(matrix.shape) > limit:
        return matrix  # only past 2**31 entries: LinearRegression and Ridge take it as it is
    indices, indptr = matrix.indices.astype(np.int32), matrix.indptr.astype(np.int32)
    return type(matrix)((matrix.data, indices, indptr), shape=matrix.shape)


def fit_pipeline(estimator, dicts: list[dict], y: np.ndarray) -> Pipeline:
    """``Pipeline([("dv", DictVectorizer()), ("model", estimator)]).fit(dicts, y)``, except
    that the regressor is fitted on the vectorizer's matrix with 32-bit indices.

    Here (scikit-learn 1.9.1, SciPy 1.17) ``DictVectorizer`` returns a CSR matrix with 64-bit
    indices, and Lasso's coordinate descent accepts only 32-bit ones (``ElasticNet.fit``
    validates with ``accept_large_sparse=False``): fitted as one pipeline, ``lasso`` fails
    with "Only sparse matrices with 32-bit integer indices are accepted". LinearRegression
    and Ridge fit the same coefficients, bit for bit, from either index type (tested), and
    no regressor checks the index type when it predicts: the saved model is the same
    two-step pipeline, fitted, whatever feeds it later (``transform`` or ``design_matrix``).
    """
    dv = DictVectorizer()
    matrix = dv.fit_transform(dicts)
    estimator.fit(with_32bit_indices(matrix), y)
    return Pipeline([("dv", dv), ("model", estimator)])


def train(
    spec: ModelSpec,
    train_rows: pd.DataFrame,
    holdout_rows: pd.DataFrame,
    *,
    min_rows: int = 10,
    zones: ZoneLookup | None = None,
) -> ModelBundle:
    """Fit the spec's pipeline on ``train_rows`` and score it on ``holdout_rows``; the holdout's
    RMSE per segment (the spec's ``monitoring.segments``, boroughs through ``zones``, the TLC's
    lookup by default) is stored with it for monitoring's segment figures."""
    features = spec.features
    fit_rows = train_rows[feats.scorable(train_rows, features)]
    eval_rows = holdout_rows[feats.scorable(holdout_rows, features)]
    if len(fit_rows) < min_rows:
        raise TrainingError(
            f"{spec.name}: only {len(fit_rows)} usable training rows, need at least {min_rows}"
        )
    if len(eval_rows) == 0:
        raise TrainingError(f"{spec.name}: the holdout has no usable rows")
    estimator = ESTIMATORS[spec.training.algorithm](**spec.training.params)
    y_train = fit_rows[DURATION].to_numpy(dtype="float64")
    pipeline = fit_pipeline(estimator, feats.to_dicts(fit_rows, features), y_train)

    # Predictions stay inside the target range the model was trained on (as ModelBundle.predict).
    target_range = bounds_of(spec.filters.get(spec.target))
    y_hold = eval_rows[DURATION].to_numpy(dtype="float64")
    pred_hold = clip_to(feats.predict(pipeline, eval_rows, features), target_range)
    info = ModelInfo(
        model_name=spec.name,
        algorithm=spec.training.algorithm,
        features=features,
        target=spec.target,
        window_start=str(train_rows[PICKUP].min().date()),
        window_end=str(holdout_rows[PICKUP].max().date()),
        holdout_start=str(holdout_rows[PICKUP].min().date()),
        n_train=len(fit_rows),
        n_holdout=len(eval_rows),
        holdout=Scores.of(y_hold, pred_hold),
        mean_baseline=Scores.of(y_hold, np.full(len(y_hold), y_train.mean())),
        fingerprint=fingerprint(spec, train_rows, holdout_rows),
        domain={c: bounds_of(spec.filters[c]) for c in features.numerical if c in spec.filters},
        target_range=target_range,
    )
    reference = reference_frame(features, eval_rows, pred_hold, spec.monitoring.reference_rows)
    info.n_reference = len(reference)
    info.n_columns = len(pipeline.steps[0][1].vocabulary_)
    info.holdout_segments = holdout_segments(
        eval_rows, pred_hold, spec.monitoring.segments, zones if zones is not None else tlc_zones()
    )
    return ModelBundle(pipeline, info, reference)


def train_on_month(
    spec: ModelSpec, month_rows: pd.DataFrame, zones: ZoneLookup | None = None
) -> tuple[ModelBundle, pd.DataFrame]:
    """The spec's model on a month of trips: the first ``train_fraction`` (by pickup time)
    trains, the rest is the holdout. Returns the bundle and the holdout rows."""
    train_rows, holdout_rows = split_by_time(month_rows, spec.training.train_fraction)
    return train(spec, train_rows, holdout_rows, zones=zones), holdout_rows


def score(bundle: ModelBundle, rows: pd.DataFrame) -> Scores:
    """A bundle's scores on ``rows`` (only the rows it can score)."""
    usable = rows[feats.scorable(rows, bundle.features)]
    return Scores.of(usable[DURATION].to_numpy(dtype="float64"), bundle.predict(usable))


def paired_errors(a: ModelBundle, b: ModelBundle, rows: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Both bundles' errors (prediction minus actual) on every one of ``rows``, aligned trip by
    trip: NaN where a model cannot score the trip (a paired comparison drops those)."""
    actual = rows[DURATION].to_numpy(dtype="float64")
    return a.predict(rows) - actual, b.predict(rows) - actual


def errors(bundle: ModelBundle, rows: pd.DataFrame) -> np.ndarray:
    """A bundle's error (prediction minus actual) on each of ``rows`` it can score, in order."""
    usable = rows[feats.scorable(rows, bundle.features)]
    return bundle.predict(usable) - usable[DURATION].to_numpy(dtype="float64")
