"""The faster ``mlops_core.features`` behaves exactly as the version it replaced.

Issue 7 made ``to_dicts``/``scorable``/``predict`` cheap on small frames (the prediction
service scores one trip per request). The previous implementation is kept as an oracle
(``original_*`` in ``bench/baselines.py``, verbatim apart from names; the serving benchmark
times it too) and this module compares both on frames of every
dtype a trips frame column or a caller may have, with missing values, odd indexes, both
``missing`` modes, sizes 0 to 30k, and a real model trained on real 2022-01 data: equal
dicts (same keys, values and Python types), equal masks, equal predictions. Nothing is faked.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from bench.baselines import original_predict, original_scorable, original_to_dicts
from mlops_core import features as F
from mlops_core.features import Features

# --- frames -----------------------------------------------------------------------------------
CATEGORICAL = {
    "Int64": pd.array([132, None, 7, -3, 2**62], dtype="Int64"),
    "Int64 no NA": pd.array([132, 1, 7, 265, 0], dtype="Int64"),
    "int64": np.array([132, 1, 7, -3, 2**62], dtype="int64"),
    "int32": np.array([132, 1, 7, 3, 2], dtype="int32"),
    "float whole": np.array([132.0, np.nan, 7.0, 3.0, 1e15]),
    "float fractional": np.array([132.5, np.nan, 7.0, 1e16, -0.0]),
    "object str": np.array(["N", None, "Y", "", "132"], dtype=object),
    "string": pd.array(["N", None, "Y", "a b", "132"], dtype="string"),
    "object ints": np.array([132, None, 7, 3, 2], dtype=object),
    "bool": np.array([True, False, True, True, False]),
}
NUMERICAL = {
    "float64": np.array([2.5, np.nan, np.inf, -0.0, 1e300]),
    "float64 plain": np.array([2.5, 0.0, 1.25, 3.0, 17.0]),
    "Int64": pd.array([1, None, 3, 4, 5], dtype="Int64"),
    "int64": np.array([1, 2, 3, 4, 5], dtype="int64"),
    "float32": np.array([1.5, np.nan, 3.25, 4.0, 5.0], dtype="float32"),
    "object numbers": np.array([1.5, None, "3.25", 4, 5.0], dtype=object),
    "Float64": pd.array([1.5, None, 3.25, 4.0, 5.0], dtype="Float64"),
}


def frame(cat, num, index=None) -> pd.DataFrame:
    return pd.DataFrame({"cat": CATEGORICAL[cat], "num": NUMERICAL[num]}, index=index)


def assert_same_dicts(got: list[dict], want: list[dict]) -> None:
    assert got == want
    for g, w in zip(got, want, strict=True):
        assert list(g) == list(w)
        assert [type(v) for v in g.values()] == [type(v) for v in w.values()]


@pytest.mark.parametrize("missing", ["drop", "zero"])
@pytest.mark.parametrize("num", sorted(NUMERICAL))
@pytest.mark.parametrize("cat", sorted(CATEGORICAL))
def test_same_mask_and_dicts_for_every_dtype(cat, num, missing):
    features = Features(categorical=("cat",), numerical=("num",), missing=missing)
    for index in (None, [10, 3, 3, 7, -1]):  # default, and unsorted with a duplicate label
        df = frame(cat, num, index)
        mask = F.scorable(df, features)
        assert np.array_equal(mask, original_scorable(df, features))
        rows = df[mask]
        assert_same_dicts(F.to_dicts(rows, features), original_to_dicts(rows, features))
        for i in range(len(df)):  # one-row frames: the service's case
            one = df.iloc[[i]]
            assert np.array_equal(F.scorable(one, features), original_scorable(one, features))
        assert_same_dicts(F.to_dicts(df.iloc[:0], features), original_to_dicts(df.iloc[:0], features))


def test_same_predictions_of_a_real_model(january_model, march_trips):
    features = january_model.features
    pipeline = january_model.pipeline
    with_gaps = march_trips.copy()
    with_gaps.loc[with_gaps.index[::7], "PULocationID"] = pd.NA
    with_gaps.loc[with_gaps.index[::11], "trip_distance"] = np.nan
    for df in (march_trips, with_gaps, with_gaps.iloc[:1], with_gaps.iloc[7:8], march_trips.iloc[:0]):
        got = F.predict(pipeline, df, features)
        want = original_predict(pipeline, df, features)
        assert np.array_equal(got, want, equal_nan=True)
    zero = Features(categorical=features.categorical, numerical=features.numerical, missing="zero")
    got = F.predict(pipeline, with_gaps.iloc[:2000], zero)
    assert np.array_equal(got, original_predict(pipeline, with_gaps.iloc[:2000], zero))


def test_same_dicts_for_random_frames():
    rng = np.random.default_rng(7)
    features = Features(categorical=("a", "b"), numerical=("x", "y"), missing="zero")
    for n in (0, 1, 2, 3, 50, 1000):
        ids = rng.integers(1, 266, n)
        df = pd.DataFrame(
            {
                "a": pd.array(np.where(rng.random(n) < 0.1, None, ids).tolist(), dtype="Int64"),
                "b": np.where(rng.random(n) < 0.1, np.nan, ids.astype(float)),
                "x": np.where(rng.random(n) < 0.1, np.nan, rng.exponential(3, n)),
                "y": rng.integers(0, 6, n),
            }
        )
        assert_same_dicts(F.to_dicts(df, features), original_to_dicts(df, features))
