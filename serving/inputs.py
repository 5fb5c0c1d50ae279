"""The body of ``POST /predict``, derived from the loaded model's ``Features``.

A body is one trip (a JSON object) or a batch (an array of objects, at most
``SERVING_MAX_BATCH_ROWS``). Each object carries the model's feature fields; other fields
are ignored, so a client may send whole trip records.

The JSON type of a feature is the type its column has in a cleaned trips frame
(``mlops_core.schema.PANDAS_DTYPES``): nullable ``Int64`` -> integer (location IDs),
``float64`` -> number, ``object`` -> string; a feature outside the canonical schema is an
integer if categorical, a number if numerical. The request frame is built with those same
dtypes, so ``ModelBundle.predict`` (the shared feature code) sees what it sees in training
and monitoring, and a trip gets the same prediction in all three.

Rules: integers are JSON integers in [0, 2^63 - 1] (``74.0`` counts, as in JSON Schema;
``true``, ``74.5`` and ``"74"`` are refused); numbers are finite JSON numbers in [0, 1e9]
(no NaN/Infinity, no negative distance); strings at most 256 characters. ``null`` is
accepted only when the model scores missing values (spec ``missing: zero``); with
``missing: drop`` a trip must carry every feature. Every refusal is a ``BadInput`` whose
message names the row and the field.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Annotated, Any

import numpy as np
import pandas as pd
import pydantic_core
from pydantic import BeforeValidator, ConfigDict, Field, Strict, TypeAdapter, ValidationError
from typing_extensions import TypedDict

from mlops_core.features import Features
from mlops_core.schema import PANDAS_DTYPES

INTEGER_MIN, INTEGER_MAX = 0, 2**63 - 1  # what a pandas Int64 column holds, IDs are >= 0
NUMBER_MIN, NUMBER_MAX = 0.0, 1e9  # finite, non-negative, far from float overflow in a model
STRING_MAX_LENGTH = 256
MAX_REPORTED_ERRORS = 20

_JSON_TYPES = {
    bool: "boolean",
    int: "integer",
    float: "number",
    str: "string",
    list: "array",
    dict: "object",
    type(None): "null",
}


class BadInput(ValueError):
    """A request the service refuses: HTTP ``status`` and a message naming the field."""

    def __init__(self, status: int, detail: str, errors: list[dict] | None = None):
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.errors = errors or []

    def body(self) -> dict:
        out: dict[str, Any] = {"detail": self.detail}
        if self.errors:
            out["errors"] = self.errors
        return out


@dataclass(frozen=True)
class FieldRule:
    name: str
    json_type: str  # "integer" | "number" | "string"
    dtype: str  # pandas dtype of the column in a trips frame
    nullable: bool


def field_rules(features: Features) -> tuple[FieldRule, ...]:
    nullable = features.missing == "zero"
    rules = []
    for name in features.columns:
        default = "Int64" if name in features.categorical else "float64"
        dtype = PANDAS_DTYPES.get(name, default)
        json_type = {"Int64": "integer", "float64": "number", "object": "string"}.get(dtype)
        if json_type is None:
            raise TypeError(
                f"feature {name!r} has dtype {dtype} in a trips frame; the service accepts "
                "integer, number and string features only"
            )
        rules.append(FieldRule(name, json_type, dtype, nullable))
    return tuple(rules)


def _whole_float_to_int(value: Any) -> Any:
    """74.0 -> 74: JSON Schema counts a number with no fractional part as an integer."""
    if type(value) is float and value.is_integer():
        return int(value)
    return value


def _annotation(rule: FieldRule) -> Any:
    if rule.json_type == "integer":
        base = Annotated[  # the constraints first, or the JSON schema loses them
            int,
            Field(ge=INTEGER_MIN, le=INTEGER_MAX),
            Strict(),
            BeforeValidator(_whole_float_to_int),
        ]
    elif rule.json_type == "number":
        base = Annotated[float, Strict(), Field(ge=NUMBER_MIN, le=NUMBER_MAX, allow_inf_nan=False)]
    else:
        base = Annotated[str, Strict(), Field(max_length=STRING_MAX_LENGTH)]
    return base | None if rule.nullable else base


def _describe(value: Any) -> str:
    kind = _JSON_TYPES.get(type(value), type(value).__name__)
    if isinstance(value, bool):
        return f"got {str(value).lower()}"
    if isinstance(value, int | float) and not isinstance(value, bool):
        text = repr(value) if isinstance(value, int) or math.isfinite(value) else str(value)
        return f"got {text}" if len(text) <= 40 else f"got a {len(text)}-digit {kind}"
    if isinstance(value, str):
        return f"got a string ({value[:20]!r}{'...' if len(value) > 20 else ''})"
    return f"got {'an' if kind[0] in 'aeiou' else 'a'} {kind}"


class TripInputs:
    """Validation and frame building for one model's features (built once per loaded model)."""

    def __init__(self, features: Features, max_rows: int):
        self.features = features
        self.max_rows = max_rows
        self.rules = field_rules(features)
        trip = TypedDict("Trip", {r.name: _annotation(r) for r in self.rules})  # type: ignore[misc]
        trip.__pydantic_config__ = ConfigDict(extra="ignore")  # type: ignore[attr-defined]
        self._one = TypeAdapter(trip)
        self._many = TypeAdapter(list[trip])
        self._trip_schema = self._one.json_schema()

    # --- parsing a request body ------------------------------------------------------------
    def parse(self, body: bytes) -> tuple[pd.DataFrame, bool]:
        """(frame with one row per trip, whether the body was a single trip) or ``BadInput``."""
        if not body.strip():
            raise BadInput(
                400, "the request body is empty: send one trip as a JSON object or a batch as an array"
            )
        try:
            data = pydantic_core.from_json(body, allow_inf_nan=True)
        except ValueError as exc:
            raise BadInput(400, f"the request body is not valid JSON: {exc}") from None
        if isinstance(data, dict):
            rows = [self._validate(self._one, data, single=True)]
            return self.frame(rows), True
        if isinstance(data, list):
            if len(data) > self.max_rows:
                raise BadInput(
                    413,
                    f"the batch has {len(data)} rows; the maximum is {self.max_rows} "
                    "(SERVING_MAX_BATCH_ROWS): split it into several requests",
                )
            return self.frame(self._validate(self._many, data, single=False)), False
        raise BadInput(
            422,
            "the request body must be a JSON object (one trip) or an array of trip objects, "
            + _describe(data),
        )

    def _validate(self, adapter: TypeAdapter, data: Any, *, single: bool) -> Any:
        try:
            return adapter.validate_python(data)
        except ValidationError as exc:
            raise self._bad_input(exc, single=single) from None

    def _bad_input(self, exc: ValidationError, *, single: bool) -> BadInput:
        problems = exc.errors(include_url=False)
        errors, messages = [], []
        for err in problems[:MAX_REPORTED_ERRORS]:
            loc = list(err["loc"])
            row = None if single else loc.pop(0) if loc else None
            field = ".".join(str(p) for p in loc)
            where = "" if row is None else f"row {row}: "
            if err["type"] == "missing":
                text = f"{where}field {field!r} is required"
            elif err["type"] in ("dict_type", "model_type") and not field:
                text = f"{where}a trip must be a JSON object, {_describe(err['input'])}"
            elif not field:
                text = f"{where}{err['msg']}"
            else:
                text = f"{where}field {field!r}: {err['msg']}, {_describe(err['input'])}"
            messages.append(text)
            errors.append({"loc": ["body", *([row] if row is not None else []), *loc], "msg": text})
        more = len(problems) - len(errors)
        detail = "; ".join(messages) + (f"; and {more} more problem(s)" if more > 0 else "")
        return BadInput(422, detail, errors)

    def frame(self, rows: list[dict]) -> pd.DataFrame:
        """Validated rows as a frame with the trips frame's dtypes (Int64, float64, object).

        Arrays are built directly (``IntegerArray(values, mask)`` costs 2 us where
        ``pd.array(..., dtype="Int64")`` infers for 20 us): a one-row frame in ~50 us.
        """
        columns = {}
        for rule in self.rules:
            values = [row[rule.name] for row in rows]
            if rule.dtype == "Int64":
                if rule.nullable:  # None -> <NA>
                    mask = np.array([v is None for v in values], dtype=bool)
                    values = [0 if v is None else v for v in values]
                else:
                    mask = np.zeros(len(values), dtype=bool)
                data = np.array(values, dtype=np.int64)
                columns[rule.name] = pd.arrays.IntegerArray(data, mask)
            elif rule.dtype == "float64":
                columns[rule.name] = np.array(values, dtype="float64")  # None -> NaN
            else:
                columns[rule.name] = np.array(values, dtype=object)
        return pd.DataFrame(columns, index=pd.RangeIndex(len(rows)), copy=False)

    # --- documenting it --------------------------------------------------------------------
    def trip_schema(self) -> dict:
        """JSON Schema of one trip (for the OpenAPI document)."""
        schema = dict(self._trip_schema)
        kinds = {name: "categorical" for name in self.features.categorical}
        kinds.update({name: "numerical" for name in self.features.numerical})
        schema["properties"] = {
            name: {
                **{k: v for k, v in prop.items() if k != "title"},
                "description": f"{kinds[name]} feature of the model",
            }
            for name, prop in schema["properties"].items()
        }
        schema["description"] = "One trip: the model's feature fields (other fields are ignored). " + (
            "null scores as 0 / category NA (the model's missing: zero)."
            if self.features.missing == "zero"
            else "Every field is required and must not be null."
        )
        return schema


def check_finite(predictions: np.ndarray) -> None:
    """A 422 naming the rows whose prediction is not a finite number (never invalid JSON)."""
    bad = np.flatnonzero(~np.isfinite(predictions))
    if len(bad):
        rows = ", ".join(str(i) for i in bad[:MAX_REPORTED_ERRORS])
        raise BadInput(
            422,
            f"the model cannot score row(s) {rows}: the prediction is not a finite number",
        )
