"""The canonical trip schema and the normalisation of any TLC parquet layout to it.

The TLC has kept column *names* but changed their parquet *types* over the years (location
IDs int64 then int32, counts double then int64 with nulls, ``ehail_fee`` of Arrow type null
then double, strings vs large strings). ``normalize`` casts any of those layouts to one
schema, so months from different years concatenate; ``clean`` applies the period and the
spec's filters and computes ``duration`` in minutes.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

PICKUP = "pickup_datetime"
DROPOFF = "dropoff_datetime"
DURATION = "duration"
NEW_YORK = "America/New_York"

# The per-taxi-type names of the two timestamps, renamed to PICKUP/DROPOFF.
TIMESTAMP_COLUMNS = {
    "green": ("lpep_pickup_datetime", "lpep_dropoff_datetime"),
    "yellow": ("tpep_pickup_datetime", "tpep_dropoff_datetime"),
}

# The canonical schema (after renaming the timestamps). Integer IDs are nullable Int64 in
# pandas; counts that the TLC has published both as double and as int64 are float64 here.
CANONICAL = pa.schema(
    [
        (PICKUP, pa.timestamp("us")),
        (DROPOFF, pa.timestamp("us")),
        ("VendorID", pa.int64()),
        ("store_and_fwd_flag", pa.string()),
        ("RatecodeID", pa.float64()),
        ("PULocationID", pa.int64()),
        ("DOLocationID", pa.int64()),
        ("passenger_count", pa.float64()),
        ("trip_distance", pa.float64()),
        ("fare_amount", pa.float64()),
        ("extra", pa.float64()),
        ("mta_tax", pa.float64()),
        ("tip_amount", pa.float64()),
        ("tolls_amount", pa.float64()),
        ("ehail_fee", pa.float64()),
        ("improvement_surcharge", pa.float64()),
        ("total_amount", pa.float64()),
        ("payment_type", pa.float64()),
        ("trip_type", pa.float64()),
        ("congestion_surcharge", pa.float64()),
    ]
)
CANONICAL_COLUMNS = tuple(CANONICAL.names)
NULLABLE_INT_COLUMNS = ("VendorID", "PULocationID", "DOLocationID")
# Pandas dtypes of a cleaned trips frame, for checks and for the synthetic generator's tests.
PANDAS_DTYPES: dict[str, str] = {
    PICKUP: "datetime64[us]",
    DROPOFF: "datetime64[us]",
    **{c: "Int64" for c in NULLABLE_INT_COLUMNS},
    "store_and_fwd_flag": "object",
    **{f.name: "float64" for f in CANONICAL if pa.types.is_floating(f.type)},
    DURATION: "float64",
}


class SchemaError(ValueError):
    """A file that cannot be normalised; the message names the file and the column."""


def _find_column(table: pa.Table, wanted: str) -> str | None:
    """The table's name for ``wanted``: exact, else a case-insensitive match."""
    if wanted in table.column_names:
        return wanted
    folded = {name.lower(): name for name in table.column_names}
    return folded.get(wanted.lower())


def _cast(column: pa.ChunkedArray, target: pa.DataType, source: str, name: str) -> pa.ChunkedArray:
    if column.type == target:
        return column
    if pa.types.is_null(column.type):
        return pa.nulls(len(column), type=target)
    if pa.types.is_timestamp(target):
        if not pa.types.is_timestamp(column.type):
            raise SchemaError(f"{source}: column {name!r} has type {column.type}, expected a timestamp")
        if column.type.tz is not None:  # TLC times are New York wall-clock times
            column = pc.local_timestamp(column.cast(pa.timestamp(column.type.unit, tz=NEW_YORK)))
        return column.cast(target)
    if pa.types.is_string(target) and (
        pa.types.is_string(column.type) or pa.types.is_large_string(column.type)
    ):
        return column.cast(target)
    numeric = pa.types.is_integer(column.type) or pa.types.is_floating(column.type)
    if (pa.types.is_integer(target) or pa.types.is_floating(target)) and numeric:
        try:  # a safe cast: 132.0 -> 132 is fine, 1.5 -> int or an overflow is refused
            return column.cast(target, safe=True)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
            raise SchemaError(
                f"{source}: column {name!r} of type {column.type} cannot be read as {target}: {exc}"
            ) from exc
    raise SchemaError(f"{source}: column {name!r} has type {column.type}, expected {target}")


def normalize(
    table: pa.Table,
    *,
    source: str,
    taxi_type: str,
    required: Iterable[str] = (),
) -> pa.Table:
    """Cast a raw TLC table of any known layout to ``CANONICAL``.

    ``required`` names canonical columns that must be present (the timestamps always are);
    other canonical columns that a layout lacks are filled with nulls, extra columns are
    dropped. A missing required column raises ``SchemaError`` naming the file and the column.
    """
    try:
        pickup_raw, dropoff_raw = TIMESTAMP_COLUMNS[taxi_type]
    except KeyError as exc:
        raise SchemaError(f"unknown taxi type {taxi_type!r}; known: {sorted(TIMESTAMP_COLUMNS)}") from exc
    raw_names = {PICKUP: pickup_raw, DROPOFF: dropoff_raw}
    must_have = {PICKUP, DROPOFF, *required}
    unknown = must_have - set(CANONICAL_COLUMNS)
    if unknown:
        raise SchemaError(f"required column(s) {sorted(unknown)} are not canonical trip columns")

    columns = []
    for fld in CANONICAL:
        wanted = raw_names.get(fld.name, fld.name)
        found = _find_column(table, wanted)
        if found is None:
            if fld.name in must_have:
                raise SchemaError(
                    f"{source}: required column {wanted!r} is missing "
                    f"(the file has: {', '.join(table.column_names)})"
                )
            columns.append(pa.nulls(table.num_rows, type=fld.type))
            continue
        columns.append(_cast(table.column(found), fld.type, source, found))
    return pa.Table.from_arrays(columns, schema=CANONICAL)


def to_pandas(table: pa.Table) -> pd.DataFrame:
    """Canonical table → pandas with stable dtypes (nullable Int64 for IDs, whatever nulls)."""
    df = table.to_pandas(
        types_mapper={pa.int64(): pd.Int64Dtype()}.get,
        timestamp_as_object=False,
        coerce_temporal_nanoseconds=False,
    )
    return df


@dataclass
class CleanStats:
    rows_read: int = 0
    no_timestamp: int = 0
    outside_period: int = 0
    filtered: dict[str, int] = field(default_factory=dict)
    rows_kept: int = 0

    def add(self, other: CleanStats) -> CleanStats:
        merged = dict(self.filtered)
        for key, value in other.filtered.items():
            merged[key] = merged.get(key, 0) + value
        return CleanStats(
            self.rows_read + other.rows_read,
            self.no_timestamp + other.no_timestamp,
            self.outside_period + other.outside_period,
            merged,
            self.rows_kept + other.rows_kept,
        )

    def as_metadata(self) -> dict[str, int]:
        out = {
            "rows_read": self.rows_read,
            "rows_without_timestamps": self.no_timestamp,
            "rows_outside_period": self.outside_period,
            "rows_kept": self.rows_kept,
        }
        out.update({f"rows_outside_{k}_bounds": v for k, v in self.filtered.items()})
        return out


def clean(
    df: pd.DataFrame,
    *,
    start: datetime,
    end: datetime,
    filters: Mapping[str, object],
) -> tuple[pd.DataFrame, CleanStats]:
    """Keep trips picked up in ``[start, end)`` that pass the spec's filters.

    Drops rows without timestamps, computes ``duration`` (minutes) and applies each filter
    (inclusive bounds on a canonical column or on ``duration``). Returns the frame sorted by
    pickup time with a fresh index, and counts of what was dropped and why.
    """
    stats = CleanStats(rows_read=len(df))
    has_times = df[PICKUP].notna() & df[DROPOFF].notna()
    stats.no_timestamp = int((~has_times).sum())
    df = df[has_times]
    in_period = (df[PICKUP] >= pd.Timestamp(start)) & (df[PICKUP] < pd.Timestamp(end))
    stats.outside_period = int((~in_period).sum())
    df = df[in_period].copy()
    df[DURATION] = (df[DROPOFF] - df[PICKUP]).dt.total_seconds() / 60.0
    for column, bounds in filters.items():
        if column not in df.columns:
            raise SchemaError(f"filter on unknown column {column!r}")
        lo = getattr(bounds, "min", None)
        hi = getattr(bounds, "max", None)
        values = df[column].astype("float64")
        keep = values.notna()
        if lo is not None:
            keep &= values >= lo
        if hi is not None:
            keep &= values <= hi
        stats.filtered[column] = int((~keep).sum())
        df = df[keep]
    df = df.sort_values(PICKUP, kind="stable").reset_index(drop=True)
    stats.rows_kept = len(df)
    return df, stats


def day_keys(df: pd.DataFrame) -> np.ndarray:
    """The ``YYYY-MM-DD`` pickup day of each row (partition keys)."""
    return df[PICKUP].dt.strftime("%Y-%m-%d").to_numpy()
