"""The body of ``POST /predict``, derived from the loaded model's ``Features``.

A body is one trip (a JSON object) or a batch (an array of objects, at most
``SERVING_MAX_BATCH_ROWS``). Each object carries the model's feature fields; other fields
are ignored, so a client may send whole trip records.

The JSON type of a feature is the type its column has in a cleaned trips frame
(``mlops_core.schema.PANDAS_DTYPES``): nullable ``Int64`` -> integer (location IDs),
``float64`` -> number, ``object`` -> string; a feature outside the canonical schema is an
integer if categorical, a number if numerical. A batch's frame is built with those same
dtypes, so ``ModelBundle.predict`` (the shared feature code) sees what it sees in training
and monitoring, and a trip gets the same prediction in all three. A single trip is scored
without a frame: its validated dict holds what that frame's row would (int, float, str,
None), which ``ModelBundle.predict_one`` turns into the same model input
(``mlops_core.features.record_dict``, compared with the frame path in the tests).

Rules: integers are JSON integers in [0, 2^53 - 1] (``74.0`` counts, as in JSON Schema;
``true``, ``74.5`` and ``"74"`` are refused; 2^53 - 1 is the largest integer JavaScript, so
Swagger UI, holds exactly); numbers are finite JSON numbers in [0, 1e9] (no NaN/Infinity, no
negative distance); strings at most 256 characters. A model's trained domain
(``ModelInfo.domain``: numerical feature -> [min, max], from its spec's filters) replaces
those bounds for its features: the default model refuses a ``trip_distance`` over 80 miles.
``null`` is accepted only when the model scores missing values (spec ``missing: zero``);
with ``missing: drop`` a trip must carry every feature. Every refusal is a ``BadInput``
whose message names the row and the field.

A batch longer than ``SERVING_MAX_BATCH_ROWS`` is refused from a count of the array's
top-level items in the raw bytes (``count_items``), before anything is decoded into Python
objects: 8 MB of ``[{},{},...]`` would otherwise make 2.8 million dicts first. A body with
fewer commas than the limit cannot hold that many items and is not counted.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any

import numpy as np
import pandas as pd
import pydantic_core
from pydantic import BeforeValidator, ConfigDict, Field, Strict, TypeAdapter, ValidationError
from typing_extensions import TypedDict

from mlops_core.features import Features
from mlops_core.schema import PANDAS_DTYPES

# IDs are >= 0; 2^53 - 1 fits an Int64 column and is exact in JSON parsers that use doubles
# (JavaScript: Swagger UI would round 2^63 - 1 up to 9223372036854776000, an invalid value).
INTEGER_MIN, INTEGER_MAX = 0, 2**53 - 1
NUMBER_MIN, NUMBER_MAX = 0.0, 1e9  # finite, non-negative, far from float overflow in a model
NUMBER_LIMIT = 1e9  # a trained domain may move the bounds, never past +-1e9
STRING_MAX_LENGTH = 256
MAX_REPORTED_ERRORS = 20
# Realistic values for the OpenAPI example (a trip from 74 East Harlem North to 168 Mott Haven).
EXAMPLES: dict[str, Any] = {
    "PULocationID": 74,
    "DOLocationID": 168,
    "trip_distance": 2.5,
    "passenger_count": 1.0,
    "fare_amount": 12.5,
    "store_and_fwd_flag": "N",
}

Domain = Mapping[str, Sequence[float | None]]  # feature -> [min, max], None: open

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
    minimum: float | int | None = None  # integer and number fields
    maximum: float | int | None = None
    trained: bool = False  # the bounds come from the model's trained domain


def _whole(x: float) -> float | int:
    """80.0 -> 80 (for the messages and the document); other values unchanged."""
    return int(x) if isinstance(x, float) and x.is_integer() and abs(x) <= INTEGER_MAX else x


def _bounds(json_type: str, trained: Sequence[float | None] | None) -> tuple[Any, Any]:
    """A field's [minimum, maximum]: the trained domain's sides where it has them, else the
    defaults; never wider than what the service accepts for the type at all."""
    if json_type == "integer":
        low, high, limit = INTEGER_MIN, INTEGER_MAX, INTEGER_MAX
    else:
        low, high, limit = NUMBER_MIN, NUMBER_MAX, NUMBER_LIMIT
    lo, hi = [*trained, None, None][:2] if trained else (None, None)
    low = low if lo is None else max(-limit, min(limit, lo))
    high = high if hi is None else max(-limit, min(limit, hi))
    if json_type == "integer":
        return math.ceil(low), math.floor(high)
    return _whole(float(low)), _whole(float(high))


def field_rules(features: Features, domain: Domain | None = None) -> tuple[FieldRule, ...]:
    nullable = features.missing == "zero"
    domain = domain or {}
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
        if json_type == "string":
            rules.append(FieldRule(name, json_type, dtype, nullable))
            continue
        trained = domain.get(name) if name in features.numerical else None
        low, high = _bounds(json_type, trained)
        rules.append(FieldRule(name, json_type, dtype, nullable, low, high, trained is not None))
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
            Field(ge=rule.minimum, le=rule.maximum),
            Strict(),
            BeforeValidator(_whole_float_to_int),
        ]
    elif rule.json_type == "number":
        base = Annotated[float, Strict(), Field(ge=rule.minimum, le=rule.maximum, allow_inf_nan=False)]
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


# --- counting a batch before decoding it -------------------------------------------------------
_STRUCTURE = b'[]{},"'
_NOT_STRUCTURE = bytes(b for b in range(256) if b not in _STRUCTURE)
_DEPTH_STEP = np.zeros(256, dtype=np.int8)
_DEPTH_STEP[list(b"[{")] = 1
_DEPTH_STEP[list(b"]}")] = -1
_QUOTE, _COMMA, _BACKSLASH = ord('"'), ord(","), ord("\\")
_LEADING_SPACE = re.compile(rb"[ \t\r\n]*")
FIRST_COUNT_CHUNK = 64 * 1024


def count_items(body: bytes, limit: int) -> tuple[int, bool]:
    """(number of items of the top-level JSON array in ``body``, whether that is exact).

    Reads the raw bytes (structure only: brackets, braces, commas, quotes; escapes inside
    strings neutralised) in chunks of growing size and stops once more than ``limit`` items
    are seen: then the count is a lower bound (``exact`` False). Exact for valid JSON; for
    invalid JSON a number that the parser's error makes moot. Costs ~3 ms per MB (numpy), and
    under 1 ms when a body of tiny items is refused.
    """
    commas, depth, in_string = 0, 0, False
    start, size, n = 0, FIRST_COUNT_CHUNK, len(body)
    while start < n:
        end = min(start + size, n)
        while end < n and body[end - 1] == _BACKSLASH:  # keep an escape in one chunk
            end += 1
        chunk = body[start:end]
        if b"\\" in chunk:  # left to right, like a JSON parser: \\ first, then \"
            chunk = chunk.replace(b"\\\\", b"").replace(b'\\"', b"")
        chars = np.frombuffer(chunk.translate(None, _NOT_STRUCTURE), dtype=np.uint8)
        quotes = chars == _QUOTE
        parity = np.bitwise_xor.accumulate(quotes.view(np.uint8))
        if in_string:
            parity ^= 1
        if len(parity):
            in_string = bool(parity[-1])
        outside = chars[~(parity.view(bool) | quotes)]
        depths = np.cumsum(_DEPTH_STEP[outside], dtype=np.int32) + depth
        commas += int(np.count_nonzero((outside == _COMMA) & (depths == 1)))
        if len(depths):
            depth = int(depths[-1])
        start, size = end, size * 2
        if commas >= max(limit, 1) and start < n:  # at least commas + 1 items
            return commas + 1, False
    if commas == 0:  # "[]" has no items, "[x]" one
        after = _LEADING_SPACE.match(body, _LEADING_SPACE.match(body).end() + 1).end()
        return (0 if body[after : after + 1] == b"]" else 1), True
    return commas + 1, True


class TripInputs:
    """Validation and frame building for one model's features (built once per loaded model).

    ``domain`` (``ModelInfo.domain``) bounds the numerical features to what the model was
    trained on; ``for_domain`` gives (and keeps) the rules of this model with its domain.
    """

    def __init__(self, features: Features, max_rows: int, domain: Domain | None = None):
        self.features = features
        self.max_rows = max_rows
        self.domain = {k: list(v) for k, v in (domain or {}).items() if k in features.numerical}
        self.rules = field_rules(features, self.domain)
        trip = TypedDict("Trip", {r.name: _annotation(r) for r in self.rules})  # type: ignore[misc]
        trip.__pydantic_config__ = ConfigDict(extra="ignore")  # type: ignore[attr-defined]
        self._one = TypeAdapter(trip)
        self._many = TypeAdapter(list[trip])
        self._trip_schema = self._one.json_schema()
        self._bounded: dict[str, TripInputs] = {}

    def for_domain(self, domain: Domain | None) -> TripInputs:
        """These rules with the numerical features bounded to ``domain`` (self if they are)."""
        wanted = {k: list(v) for k, v in (domain or {}).items() if k in self.features.numerical}
        if wanted == self.domain:
            return self
        key = repr(sorted(wanted.items()))
        if key not in self._bounded:  # compiled once per model (~10 ms), then reused
            self._bounded[key] = TripInputs(self.features, self.max_rows, wanted)
        return self._bounded[key]

    # --- parsing a request body ------------------------------------------------------------
    def parse(self, body: bytes) -> tuple[dict | list[dict], bool]:
        """(the validated trip, True) for an object, (the validated trips, False) for an
        array, or ``BadInput``. A trip is a dict of the model's features holding what its
        column in a trips frame holds (int, float, str, None): ``ModelBundle.predict_one``
        scores one as is, ``frame`` makes a batch a frame with the trips frame's dtypes."""
        start = _LEADING_SPACE.match(body).end()
        if start == len(body) or body.isspace():
            raise BadInput(
                400, "the request body is empty: send one trip as a JSON object or a batch as an array"
            )
        # An array that may hold more than max_rows items is counted before decoding: one
        # long enough for that, and with as many commas anywhere (its top-level commas are
        # among them; bytes.count costs ~10 us where count_items costs ~0.1 ms on 60 KB).
        if (
            body[start] == ord("[")
            and len(body) - start >= 2 * self.max_rows + 3
            and body.count(b",") >= self.max_rows
        ):
            count, exact = count_items(body, self.max_rows)
            if count > self.max_rows:
                raise self._too_many(count, exact)
        try:
            data = pydantic_core.from_json(body, allow_inf_nan=True)
        except ValueError as exc:
            raise BadInput(400, f"the request body is not valid JSON: {exc}") from None
        if isinstance(data, dict):
            return self._validate(self._one, data, single=True), True
        if isinstance(data, list):
            if len(data) > self.max_rows:
                raise self._too_many(len(data), True)
            return self._validate(self._many, data, single=False), False
        raise BadInput(
            422,
            "the request body must be a JSON object (one trip) or an array of trip objects, "
            + _describe(data),
        )

    def _too_many(self, count: int, exact: bool) -> BadInput:
        rows = f"{count} rows" if exact else f"more than {self.max_rows} rows"
        return BadInput(
            413,
            f"the batch has {rows}; the maximum is {self.max_rows} "
            "(SERVING_MAX_BATCH_ROWS): split it into several requests",
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
        """JSON Schema of one trip (for the OpenAPI document), with an ``example``."""
        schema = dict(self._trip_schema)
        kinds = {name: "categorical" for name in self.features.categorical}
        kinds.update({name: "numerical" for name in self.features.numerical})
        rules = {rule.name: rule for rule in self.rules}
        example = {rule.name: _example(rule) for rule in self.rules}
        schema["properties"] = {
            name: {
                **{k: v for k, v in prop.items() if k != "title"},
                "description": _field_description(rules[name], kinds[name]),
                "examples": [example[name]],
            }
            for name, prop in schema["properties"].items()
        }
        schema["description"] = "One trip: the model's feature fields (other fields are ignored). " + (
            "null scores as 0 / category NA (the model's missing: zero)."
            if self.features.missing == "zero"
            else "Every field is required and must not be null."
        )
        schema["example"] = example
        return schema


def _field_description(rule: FieldRule, kind: str) -> str:
    text = f"{kind} feature of the model"
    if rule.trained:
        text += f"; the model was trained on values in [{rule.minimum}, {rule.maximum}], others are refused"
    return text


def _example(rule: FieldRule) -> Any:
    """A realistic value (``EXAMPLES``), else 1 / 1.0 / "N", inside the field's bounds."""
    value = EXAMPLES.get(rule.name, {"integer": 1, "number": 1.0, "string": "N"}[rule.json_type])
    if rule.json_type == "string":
        return str(value)[:STRING_MAX_LENGTH]
    value = min(max(value, rule.minimum), rule.maximum)
    return int(value) if rule.json_type == "integer" else float(value)


def check_finite(predictions: np.ndarray | float) -> None:
    """A 422 naming the rows whose prediction is not a finite number (never invalid JSON)."""
    if isinstance(predictions, float):  # one trip
        if math.isfinite(predictions):
            return
        predictions = np.array([predictions])
    bad = np.flatnonzero(~np.isfinite(predictions))
    if len(bad):
        rows = ", ".join(str(i) for i in bad[:MAX_REPORTED_ERRORS])
        raise BadInput(
            422,
            f"the model cannot score row(s) {rows}: the prediction is not a finite number",
        )
