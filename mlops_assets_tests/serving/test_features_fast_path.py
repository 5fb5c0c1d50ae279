"""The faster ``mlops_core.features`` behaves exactly as the version it replaced.

Issue 7 made ``to_dicts``/``scorable``/``predict`` cheap on small frames (the prediction
service scores one trip per request). The previous implementation is kept as an oracle
(``original_*`` in ``bench/baselines.py``, verbatim apart from names; the serving benchmark
times it too) and this module compares both on frames of every
dtype a trips frame column or a caller may have, with missing values, odd indexes, both
``missing`` modes, sizes 0 to 30k, and a real model trained on real 2022-01 data: equal
dicts (same keys, values and Python types), equal masks, equal predictions. Nothing is faked.

Issue 28 added the one-record path (``record_dict``/``record_scorable``/``predict_record``,
``ModelBundle.predict_one``: a single trip scored without a frame); it is compared here with
the frame path on one-row frames of every dtype the service builds (``Int64``, ``float64``,
``object``) and every kind of value a validated trip holds, and on real trips.
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


# --- one record, without a frame (issue 28) ---------------------------------------------------
# What a validated trip holds for a column of each dtype of a trips frame (None: missing).
RECORD_VALUES = {
    "Int64": [0, 1, 74, 265, 2**53 - 1, None],
    "float64": [0.0, -0.0, 1.0, 2.5, 1.5, 0.1 + 0.2, 1e-7, 80.0, 2.5e15, 1e16, 5e-324, None, np.nan],
    # float categories pandas cannot cast to Int64 (the record path must fail too)
    "float64 out of range": [2.0**63, -(2.0**63), 1e300, np.inf, -np.inf],
    "object": ["N", "Y", "", "132", "a b", "é", None],
}


def one_row(value, dtype: str):
    if dtype == "Int64":
        return pd.array([value], dtype="Int64")
    if dtype == "float64":
        return np.array([np.nan if value is None else value], dtype="float64")
    return np.array([value], dtype=object)


def record_cases():
    for cat_key, cat_values in RECORD_VALUES.items():
        cat_dtype = cat_key.split()[0]
        for num_dtype in ("float64", "Int64"):
            for cat in cat_values:
                for num in RECORD_VALUES[num_dtype]:
                    yield cat_dtype, cat, num_dtype, num


# pandas warns while it fails to cast an infinite or huge float category to Int64 (the oracle)
@pytest.mark.filterwarnings("ignore:invalid value encountered in cast:RuntimeWarning")
@pytest.mark.parametrize("missing", ["drop", "zero"])
def test_a_record_gives_the_dict_and_mask_of_its_one_row_frame(missing):
    features = Features(categorical=("cat",), numerical=("num",), missing=missing)
    for cat_dtype, cat, num_dtype, num in record_cases():
        df = pd.DataFrame({"cat": one_row(cat, cat_dtype), "num": one_row(num, num_dtype)})
        record = {"num": num, "cat": cat, "other": "ignored"}  # key order is the features'
        assert F.record_scorable(record, features) == F.scorable(df, features)[0], (record, df.dtypes)
        assert F.record_scorable(record, features) == original_scorable(df, features)[0]
        if not F.record_scorable(record, features):
            continue
        try:
            want = original_to_dicts(df, features)
        except (TypeError, ValueError, OverflowError):  # a float category outside int64: no cast
            with pytest.raises((TypeError, ValueError, OverflowError)):
                F.record_dict(record, features)
            with pytest.raises((TypeError, ValueError, OverflowError)):
                F.to_dicts(df, features)
            continue
        got = [F.record_dict(record, features)]
        assert_same_dicts(got, F.to_dicts(df, features))
        assert_same_dicts(got, want)
        assert repr(got) == repr(want)  # -0.0 stays -0.0


def test_a_record_holds_what_a_trips_frame_holds():
    features = Features(categorical=("cat",), numerical=("num",))
    with pytest.raises(TypeError):
        F.record_dict({"cat": 1, "num": "2.5"}, features)
    with pytest.raises(TypeError):
        F.record_dict({"cat": True, "num": 2.5}, features)  # a bool is no location ID


def test_a_record_predicts_exactly_as_its_frame_with_a_real_model(january_model, march_trips):
    """Real trips (and the same with gaps), one record at a time, through the bundle: the
    number of the frame path, of the row alone and of the row within the whole frame."""
    features = january_model.features
    columns = list(features.columns)
    with_gaps = march_trips[columns].iloc[:3000].copy()
    with_gaps.loc[with_gaps.index[::7], "PULocationID"] = pd.NA
    with_gaps.loc[with_gaps.index[::11], "trip_distance"] = np.nan
    zero = Features(categorical=features.categorical, numerical=features.numerical, missing="zero")
    cases = ((march_trips[columns].iloc[:3000], features), (with_gaps, features), (with_gaps, zero))
    for rows, feats in cases:
        whole = F.predict(january_model.pipeline, rows, feats)
        records = [
            {k: (None if v is pd.NA or v != v else v) for k, v in r.items()} for r in rows.to_dict("records")
        ]
        assert {type(v) for r in records for v in r.values()} <= {int, float, type(None)}
        got = [F.predict_record(january_model.pipeline, r, feats) for r in records]
        assert np.array_equal(np.array(got, dtype="float64"), whole, equal_nan=True)
        one_rows = [F.predict(january_model.pipeline, rows.iloc[[i]], feats)[0] for i in range(0, 3000, 97)]
        assert np.array_equal(np.array(one_rows), np.array(got[::97]), equal_nan=True)
    records = [{k: v for k, v in r.items()} for r in march_trips[columns].iloc[:3000].to_dict("records")]
    clipped = january_model.predict(march_trips.iloc[:3000])
    assert [january_model.predict_one(r) for r in records] == clipped.tolist()
    assert all(type(january_model.predict_one(r)) is float for r in records[:3])
