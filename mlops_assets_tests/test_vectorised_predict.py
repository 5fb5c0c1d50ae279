"""The vectorised prediction path (issue 15) gives bit-identical predictions.

``features.design_matrix`` builds a model's input matrix from whole columns instead of one
dict per trip; ``predict`` uses it from ``VECTORISED_FROM_ROWS`` rows on. It is only fine if
nothing changes: the matrix is ``DictVectorizer.transform``'s entry for entry (same indices,
values and row pointers, for every column dtype a caller may pass, both ``missing`` modes,
categories the vectorizer never saw), and on every real day of the shared months the
predictions of a model trained on real data are the same float64 bits.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.feature_extraction import DictVectorizer
from sklearn.linear_model import Ridge
from sklearn.pipeline import Pipeline

from mlops_assets_tests.helpers import default_spec, load_trips, train_month
from mlops_assets_tests.serving.test_features_fast_path import CATEGORICAL, NUMERICAL, frame
from mlops_core import features as F
from mlops_core.bundle import clip_to
from mlops_core.features import Features
from mlops_core.schema import day_keys


def bits(values: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(values, dtype="float64").view(np.int64)


def assert_same_matrix(got, want) -> None:
    assert got.shape == want.shape
    assert got.dtype == want.dtype
    assert np.array_equal(got.indptr, want.indptr)
    assert np.array_equal(got.indices, want.indices)
    assert np.array_equal(bits(got.data), bits(want.data))
    assert got.has_sorted_indices


@pytest.mark.parametrize("missing", ["drop", "zero"])
@pytest.mark.parametrize("num", sorted(NUMERICAL))
@pytest.mark.parametrize("cat", sorted(CATEGORICAL))
def test_design_matrix_is_the_vectorizers_for_every_dtype(cat, num, missing):
    features = Features(categorical=("cat",), numerical=("num",), missing=missing)
    df = frame(cat, num, [10, 3, 3, 7, -1])
    rows = df[F.scorable(df, features)]
    if not len(rows):
        return
    # Fitted on the first rows only: later rows bring categories it never saw.
    dv = DictVectorizer().fit(F.to_dicts(rows.iloc[:2], features))
    assert_same_matrix(F.design_matrix(dv, rows, features), dv.transform(F.to_dicts(rows, features)))


def test_bit_identical_predictions_of_a_ridge_on_random_frames():
    rng = np.random.default_rng(3)
    features = Features(categorical=("a", "b"), numerical=("x", "y"), missing="zero")
    n = 5000
    ids = rng.integers(1, 266, n)
    df = pd.DataFrame(
        {
            "a": pd.array(np.where(rng.random(n) < 0.1, None, ids).tolist(), dtype="Int64"),
            "b": np.where(rng.random(n) < 0.1, np.nan, rng.integers(1, 300, n).astype(float)),
            "x": np.where(rng.random(n) < 0.1, np.nan, rng.exponential(3, n)),
            "y": rng.integers(0, 6, n),
        }
    )
    pipeline = Pipeline([("dv", DictVectorizer()), ("model", Ridge(alpha=0.3))])
    pipeline.fit(F.to_dicts(df.iloc[:3000], features), rng.normal(20, 5, 3000))
    assert F.vectorisable(pipeline)
    want = pipeline.predict(F.to_dicts(df, features))
    assert np.array_equal(bits(F.predict_vectorised(pipeline, df, features)), bits(want))
    assert np.array_equal(bits(F.predict(pipeline, df, features)), bits(want))


def test_bit_identical_predictions_on_every_real_day(trip_data_dir):
    """A model trained on real 2021-01 scores every day of the five other shared months, with
    and without rows it cannot score, the same to the last bit as through one dict per trip."""
    spec = default_spec()
    bundle = train_month(spec, trip_data_dir, "2021-01")
    features, pipeline = bundle.features, bundle.pipeline
    assert F.vectorisable(pipeline)
    days = 0
    for start, end in (("2021-02-01", "2021-04-01"), ("2022-01-01", "2022-04-01")):
        trips = load_trips(spec, trip_data_dir, start, end)
        keys = day_keys(trips)
        for day in sorted(set(keys)):
            rows = trips[keys == day]
            rows = rows[F.scorable(rows, features)]
            want = pipeline.predict(F.to_dicts(rows, features))
            assert np.array_equal(bits(F.predict_vectorised(pipeline, rows, features)), bits(want)), day
            days += 1
        with_gaps = trips.iloc[:20000].copy()
        with_gaps.loc[with_gaps.index[::9], "DOLocationID"] = pd.NA
        got = bundle.predict(with_gaps)
        reference = np.full(len(with_gaps), np.nan)
        mask = F.scorable(with_gaps, features)
        reference[mask] = pipeline.predict(F.to_dicts(with_gaps[mask], features))
        assert np.array_equal(bits(got), bits(clip_to(reference, bundle.info.target_range)))
    assert days == 28 + 31 + 31 + 28 + 31
