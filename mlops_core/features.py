"""The one feature path, shared by training, the ``predictions`` asset and the prediction service.

``Features`` is the one description of a model's features: a spec's ``features:`` block, the
copy saved with every model (``model.json``) and what the prediction service builds its
request rules from. Categorical values become strings
(one-hot encoded by the model's ``DictVectorizer``), numerical values floats. Rows with a
missing feature are either left unscored (``missing: drop``, the prediction is NaN, never
a made-up number) or scored with the value read as category ``"NA"`` / number 0
(``missing: zero``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, model_validator

MISSING_CATEGORY = "NA"


class Features(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    categorical: tuple[str, ...] = ()
    numerical: tuple[str, ...] = ()
    # How rows with a missing feature are treated: "drop" leaves them unscored (and out of
    # training); "zero" scores them with the missing value read as 0 / category "NA".
    missing: Literal["drop", "zero"] = "drop"

    @model_validator(mode="after")
    def _some_features(self) -> Features:
        names = [*self.categorical, *self.numerical]
        if not names:
            raise ValueError("a spec needs at least one feature")
        if len(set(names)) != len(names):
            raise ValueError(f"a feature is listed twice: {names}")
        return self

    @property
    def columns(self) -> list[str]:
        return columns(self)


def columns(features: Features) -> list[str]:
    return [*features.categorical, *features.numerical]


def scorable(df: pd.DataFrame, features: Features) -> np.ndarray:
    """Boolean mask of the rows a model scores."""
    if features.missing == "zero" or len(df) == 0:
        return np.ones(len(df), dtype=bool)
    numeric_ok = [np.isfinite(df[c].to_numpy(dtype="float64", na_value=np.nan)) for c in features.numerical]
    # ~isna of the column's array is Series.notna() without building a Series (~40 us each)
    present = [~np.asarray(df[c].array.isna(), dtype=bool) for c in features.categorical]
    return np.logical_and.reduce([*numeric_ok, *present, np.ones(len(df), dtype=bool)])


def _categorical_strings(series: pd.Series) -> pd.Series:
    """Location IDs and the like as strings: 132 -> "132" (never "132.0"), missing -> "NA"."""
    values = series
    if pd.api.types.is_float_dtype(values):
        whole = values.dropna()
        if (whole == whole.round()).all():
            values = values.astype("Int64")
    return values.astype("string").fillna(MISSING_CATEGORY).astype(object)


def _categorical_values(series: pd.Series) -> list:
    """``_categorical_strings(series).tolist()``; integer columns (location IDs) directly.

    For ``Int64``/``int64`` pandas' string conversion is ``str()`` of each integer and
    missing becomes "NA": the same, done here without three pandas copies (~0.1 ms a column).
    """
    if isinstance(series.dtype, pd.Int64Dtype) or series.dtype == np.dtype("int64"):
        return [MISSING_CATEGORY if v is pd.NA else str(v) for v in series.tolist()]
    return _categorical_strings(series).tolist()


def _numerical_values(series: pd.Series) -> list:
    """Floats with missing as 0.0 (``to_numeric`` -> float64 -> ``fillna(0.0)``) as a list."""
    if series.dtype == np.dtype("float64"):
        values = series.to_numpy()
        return np.where(np.isnan(values), 0.0, values).tolist()
    return pd.to_numeric(series, errors="raise").astype("float64").fillna(0.0).tolist()


def to_dicts(df: pd.DataFrame, features: Features) -> list[dict]:
    """Feature dicts for the model's ``DictVectorizer`` (rows must be scorable or missing=zero).

    Each column is converted once (strings for categorical, floats for numerical) and the
    rows are zipped from plain Python lists: the same dicts, with the same Python types, that
    building a frame of converted columns and calling ``to_dict("records")`` gave, without
    that frame (~0.6 ms a call: most of a one-row prediction in the prediction service).
    """
    names = columns(features)
    values = [_categorical_values(df[col]) for col in features.categorical]
    values += [_numerical_values(df[col]) for col in features.numerical]
    if not names:
        return [{} for _ in range(len(df))]
    return [dict(zip(names, row, strict=True)) for row in zip(*values, strict=True)]


# --- one record, without a frame (the prediction service's single trip) ----------------------
def _record_category(value) -> str:
    """``_categorical_values`` of a one-row column holding ``value``: an int (``Int64``) is
    ``str`` of it, a str (``object``) itself, a float (``float64``) ``str`` of its integer when
    whole (pandas casts a whole float column to ``Int64`` first) and of itself otherwise;
    missing (None, NaN) is "NA"."""
    if value is None:
        return MISSING_CATEGORY
    kind = type(value)
    if kind is int or kind is str:
        return str(value)
    if kind is float:
        if value != value:
            return MISSING_CATEGORY
        if not (value.is_integer() or math.isinf(value)):
            return str(value)
        if not -(2**63) <= value < 2**63:  # inf, or no int64: pandas cannot cast the column
            raise OverflowError(f"cannot use {value} as a category: the column does not cast to Int64")
        return str(int(value))
    raise TypeError(f"a record's category must be int, str, float or None, got {kind.__name__}")


def _record_number(value) -> float:
    """``_numerical_values`` of a one-row ``float64`` column holding ``value`` (None, NaN -> 0.0)."""
    if value is None:
        return 0.0
    kind = type(value)
    if kind is float:
        return 0.0 if value != value else value
    if kind is int:
        return float(value)
    raise TypeError(f"a record's number must be float, int or None, got {kind.__name__}")


def record_scorable(record: Mapping[str, Any], features: Features) -> bool:
    """``scorable`` of the one-row frame holding ``record`` (see ``record_dict``)."""
    if features.missing == "zero":
        return True
    for name in features.categorical:
        value = record[name]
        if value is None or (type(value) is float and value != value):
            return False
    for name in features.numerical:
        value = record[name]
        if value is None or not math.isfinite(value):
            return False
    return True


def record_dict(record: Mapping[str, Any], features: Features) -> dict:
    """``to_dicts(frame, features)[0]`` for the one-row frame holding ``record`` with a trips
    frame's dtypes, without building the frame (~0.2 ms of a one-trip request).

    ``record`` maps each feature to a Python scalar as the frame would hold it: an int for
    an ``Int64`` column (location IDs), a float for a ``float64`` one, a str for an
    ``object`` one, None for missing. The dict is equal, key order and value types included
    (``mlops_assets_tests/serving/test_features_fast_path.py`` compares them).
    """
    out = {name: _record_category(record[name]) for name in features.categorical}
    for name in features.numerical:
        out[name] = _record_number(record[name])
    return out


def predict_record(pipeline, record: Mapping[str, Any], features: Features) -> float:
    """``predict(pipeline, frame, features)[0]`` for the one-row frame holding ``record`` (see
    ``record_dict``): the same dict through the same ``pipeline.predict``; NaN if unscorable."""
    if not record_scorable(record, features):
        return math.nan
    return pipeline.predict([record_dict(record, features)])[0]


def _category_codes(series: pd.Series) -> tuple[np.ndarray, list[str]]:
    """Each row's code into the column's distinct values, and those values as the strings
    ``_categorical_strings`` gives. Integer columns (location IDs) are factorised as integers
    and only their distinct values become strings (``str`` of each, missing "NA", as in
    ``_categorical_values``)."""
    if isinstance(series.dtype, pd.Int64Dtype) or series.dtype == np.dtype("int64"):
        codes, uniques = pd.factorize(series, use_na_sentinel=False)
        return codes, [MISSING_CATEGORY if v is pd.NA else str(v) for v in uniques.tolist()]
    codes, uniques = pd.factorize(_categorical_strings(series).to_numpy(), use_na_sentinel=False)
    return codes, list(uniques)


def _numerical_array(series: pd.Series) -> np.ndarray:
    """``_numerical_values(series)`` as a float64 array (the same numbers, no Python floats)."""
    if series.dtype == np.dtype("float64"):
        values = series.to_numpy()
        return np.where(np.isnan(values), 0.0, values)
    return pd.to_numeric(series, errors="raise").astype("float64").fillna(0.0).to_numpy(dtype="float64")


# From this many rows on, ``predict`` builds the model's input matrix from whole columns
# (``design_matrix``) instead of one dict per row; below it the dicts are cheaper (the
# prediction service scores one trip per request).
VECTORISED_FROM_ROWS = 512


def vectorisable(pipeline) -> bool:
    """A fitted two-step ``DictVectorizer`` + regressor pipeline with a sparse vectorizer (what
    every bundle holds): ``design_matrix`` can stand in for its vectorizer."""
    from sklearn.feature_extraction import DictVectorizer

    steps = getattr(pipeline, "steps", None)
    if not steps or len(steps) != 2:
        return False
    dv = steps[0][1]
    return isinstance(dv, DictVectorizer) and dv.sparse and hasattr(dv, "vocabulary_")


def design_matrix(dv, df: pd.DataFrame, features: Features):
    """``dv.transform(to_dicts(df, features))``, built from whole columns.

    The same CSR matrix, entry for entry: per row the categorical features' one-hot columns
    (``<name><separator><value>``, value 1) and the numerical features' columns with their
    values (explicit zeros kept), categories the vectorizer never saw left out, indices sorted
    within each row as ``DictVectorizer`` leaves them. So the regressor computes exactly the
    same sums in the same order: bit-identical predictions (tested on real days).
    """
    import scipy.sparse as sp

    n, vocab = len(df), dv.vocabulary_
    index_columns, value_columns = [], []
    for col in features.categorical:
        codes, uniques = _category_codes(df[col])
        lookup = np.array([vocab.get(f"{col}{dv.separator}{u}", -1) for u in uniques], dtype=np.intc)
        index_columns.append(lookup[codes] if len(uniques) else np.full(n, -1, dtype=np.intc))
        value_columns.append(np.ones(n, dtype=dv.dtype))
    for col in features.numerical:
        index_columns.append(np.full(n, vocab.get(col, -1), dtype=np.intc))
        value_columns.append(_numerical_array(df[col]).astype(dv.dtype, copy=False))
    index = np.stack(index_columns, axis=1)
    values = np.stack(value_columns, axis=1)
    present = index >= 0
    # Sort each row's entries by column index; absent ones (-1) go last and are dropped.
    order = np.argsort(np.where(present, index, np.iinfo(np.intc).max), axis=1, kind="stable")
    index, values, present = (np.take_along_axis(a, order, axis=1) for a in (index, values, present))
    indptr = np.zeros(n + 1, dtype=np.intc)
    np.cumsum(present.sum(axis=1), out=indptr[1:])
    matrix = sp.csr_array((values[present], index[present], indptr), shape=(n, len(vocab)), dtype=dv.dtype)
    matrix.sort_indices()  # already sorted: marks it so, as DictVectorizer's output is
    return matrix


def _predict_rows(pipeline, df: pd.DataFrame, features: Features) -> np.ndarray:
    if len(df) >= VECTORISED_FROM_ROWS and vectorisable(pipeline):
        return predict_vectorised(pipeline, df, features)
    return pipeline.predict(to_dicts(df, features))


def predict_vectorised(pipeline, df: pd.DataFrame, features: Features) -> np.ndarray:
    """``pipeline.predict(to_dicts(df, features))`` through ``design_matrix`` (scorable rows
    only; the pipeline must be ``vectorisable``)."""
    (_, dv), (_, regressor) = pipeline.steps
    return regressor.predict(design_matrix(dv, df, features))


def predict(pipeline, df: pd.DataFrame, features: Features) -> np.ndarray:
    """Predictions for every row of ``df``: NaN where the row is not scorable."""
    out = np.full(len(df), np.nan)
    mask = scorable(df, features)
    if mask.all() and len(df):  # the usual case: no copy of the frame
        out[:] = _predict_rows(pipeline, df, features)
    elif mask.any():
        out[mask] = _predict_rows(pipeline, df.loc[mask], features)
    return out
