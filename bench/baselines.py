"""Baselines kept to measure (and check) against, measured in the same run as the code they
were replaced by.

The feature code before issue 7 (``original_*``, verbatim apart from names): ``bench/serving.py``
times ``ModelBundle.predict`` with it and with ``mlops_core.features``, and the serving
tests' ``test_features_fast_path.py`` uses it as the oracle the fast path must match exactly.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from mlops_core.features import MISSING_CATEGORY


def original_scorable(df, features):
    if features.missing == "zero" or len(df) == 0:
        return np.ones(len(df), dtype=bool)
    numeric_ok = [np.isfinite(df[c].to_numpy(dtype="float64", na_value=np.nan)) for c in features.numerical]
    present = [df[c].notna().to_numpy() for c in features.categorical]
    return np.logical_and.reduce([*numeric_ok, *present, np.ones(len(df), dtype=bool)])


def original_categorical_strings(series):
    # The same as today's ``features._categorical_strings``, kept here so that the oracle
    # stays independent of the code it checks.
    values = series
    if pd.api.types.is_float_dtype(values):
        whole = values.dropna()
        if (whole == whole.round()).all():
            values = values.astype("Int64")
    return values.astype("string").fillna(MISSING_CATEGORY).astype(object)


def original_to_dicts(df, features):
    out = pd.DataFrame(index=df.index)
    for col in features.categorical:
        out[col] = original_categorical_strings(df[col])
    for col in features.numerical:
        out[col] = pd.to_numeric(df[col], errors="raise").astype("float64").fillna(0.0)
    return out.to_dict("records")


def original_predict(pipeline, df, features):
    out = np.full(len(df), np.nan)
    mask = original_scorable(df, features)
    if mask.any():
        out[mask] = pipeline.predict(original_to_dicts(df.loc[mask], features))
    return out
