"""Schema normalisation and cleaning (pure functions, small frames, exact expectations).

Exercises ``mlops_core.schema`` on both TLC type layouts: the 2021-2022 layout of
the real files and the later layout, built here by casting a real file's columns.
Nothing is faked.
"""

from datetime import datetime

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from mlops_core import schema
from mlops_core.specs import Bounds

LATER_LAYOUT = {
    "PULocationID": pa.int32(),
    "DOLocationID": pa.int32(),
    "RatecodeID": pa.int64(),
    "passenger_count": pa.int64(),
    "payment_type": pa.int64(),
    "trip_type": pa.int64(),
    "ehail_fee": pa.float64(),
    "store_and_fwd_flag": pa.large_string(),
}


def to_later_layout(table: pa.Table) -> pa.Table:
    """The post-2022 TLC layout: int32 IDs, int64 counts with nulls, double ehail_fee."""
    columns = []
    for name in table.column_names:
        target = LATER_LAYOUT.get(name)
        columns.append(table.column(name).cast(target) if target else table.column(name))
    return pa.table(dict(zip(table.column_names, columns, strict=True)))


@pytest.fixture(scope="module")
def raw_table(trip_data_dir) -> pa.Table:
    return pq.read_table(trip_data_dir / "green_tripdata_2022-02.parquet")


def test_both_layouts_normalise_to_the_same_table(raw_table):
    later = to_later_layout(raw_table)
    assert later.schema.field("PULocationID").type == pa.int32()
    assert later.schema.field("passenger_count").type == pa.int64()
    with pytest.raises(pa.ArrowInvalid):
        pa.concat_tables([raw_table, later])  # what the normalisation is for

    a = schema.normalize(raw_table, source="old", taxi_type="green")
    b = schema.normalize(later, source="new", taxi_type="green")
    assert a.schema == schema.CANONICAL == b.schema
    assert a.equals(b)
    both = pa.concat_tables([a, b])
    assert both.num_rows == 2 * raw_table.num_rows


def test_pandas_dtypes_are_stable(raw_table):
    df = schema.to_pandas(schema.normalize(raw_table, source="f", taxi_type="green"))
    for column, dtype in schema.PANDAS_DTYPES.items():
        if column != schema.DURATION:
            assert str(df[column].dtype) == dtype, column
    # IDs stay integers even with nulls; counts keep NaN for "missing"
    assert df["PULocationID"].dtype == "Int64"
    assert df["passenger_count"].isna().sum() == raw_table.column("passenger_count").null_count


def test_missing_required_column_names_file_and_column(raw_table):
    table = raw_table.drop_columns(["trip_distance"])
    with pytest.raises(schema.SchemaError, match=r"feb\.parquet: required column 'trip_distance' is missing"):
        schema.normalize(table, source="feb.parquet", taxi_type="green", required=["trip_distance"])


def test_missing_timestamp_is_always_an_error(raw_table):
    table = raw_table.rename_columns(
        ["pickup_time" if n == "lpep_pickup_datetime" else n for n in raw_table.column_names]
    )
    with pytest.raises(schema.SchemaError, match=r"x\.parquet: required column 'lpep_pickup_datetime'"):
        schema.normalize(table, source="x.parquet", taxi_type="green")


def test_case_only_renames_are_accepted(raw_table):
    table = raw_table.rename_columns([n.lower() for n in raw_table.column_names])
    out = schema.normalize(table, source="f", taxi_type="green", required=["PULocationID"])
    assert out.equals(schema.normalize(raw_table, source="f", taxi_type="green"))


def test_optional_columns_absent_are_null_filled(raw_table):
    out = schema.normalize(raw_table.drop_columns(["ehail_fee", "trip_type"]), source="f", taxi_type="green")
    assert out.column("trip_type").null_count == raw_table.num_rows


def test_wrong_type_names_the_column():
    table = pa.table(
        {
            "lpep_pickup_datetime": pa.array([datetime(2022, 2, 1, 8)], pa.timestamp("us")),
            "lpep_dropoff_datetime": pa.array([datetime(2022, 2, 1, 8, 20)], pa.timestamp("us")),
            "trip_distance": pa.array(["3.2 miles"]),
        }
    )
    with pytest.raises(schema.SchemaError, match=r"bad\.parquet: column 'trip_distance' has type string"):
        schema.normalize(table, source="bad.parquet", taxi_type="green")


def test_fractional_ids_are_refused():
    table = pa.table(
        {
            "lpep_pickup_datetime": pa.array([datetime(2022, 2, 1, 8)], pa.timestamp("us")),
            "lpep_dropoff_datetime": pa.array([datetime(2022, 2, 1, 8, 20)], pa.timestamp("us")),
            "PULocationID": pa.array([12.5]),
        }
    )
    with pytest.raises(schema.SchemaError, match="'PULocationID' of type double cannot be read as int64"):
        schema.normalize(table, source="f", taxi_type="green")


def test_timezone_aware_timestamps_become_new_york_wall_clock():
    utc = pa.array([datetime(2022, 2, 1, 13, 0)], pa.timestamp("us", tz="UTC"))
    ny = pc.assume_timezone(pa.array([datetime(2022, 2, 1, 8, 0)], pa.timestamp("us")), "America/New_York")
    table = pa.table({"lpep_pickup_datetime": ny, "lpep_dropoff_datetime": utc})
    out = schema.to_pandas(schema.normalize(table, source="f", taxi_type="green"))
    assert out.loc[0, schema.PICKUP] == pd.Timestamp("2022-02-01 08:00")
    assert out.loc[0, schema.DROPOFF] == pd.Timestamp("2022-02-01 08:00")


def frame(rows):
    df = pd.DataFrame(rows, columns=[schema.PICKUP, schema.DROPOFF, "trip_distance"])
    df[schema.PICKUP] = pd.to_datetime(df[schema.PICKUP], format="ISO8601").astype("datetime64[us]")
    df[schema.DROPOFF] = pd.to_datetime(df[schema.DROPOFF], format="ISO8601").astype("datetime64[us]")
    return df


def test_clean_keeps_the_period_and_the_bounds():
    df = frame(
        [
            ("2022-02-01 08:00", "2022-02-01 08:10", 1.0),  # kept: 10 min
            ("2022-02-01 09:00", "2022-02-01 09:00:30", 1.0),  # 0.5 min: too short
            ("2022-02-01 10:00", "2022-02-01 13:01", 1.0),  # 181 min: too long
            ("2022-02-01 11:00", "2022-02-01 12:00", 1.0),  # kept: exactly 60
            ("2022-02-01 12:00", "2022-02-01 15:00", 1.0),  # kept: exactly 180 (inclusive)
            ("2009-01-01 00:10", "2009-01-01 00:20", 1.0),  # stray 2009 timestamp
            ("2022-01-31 23:59", "2022-02-01 00:10", 1.0),  # previous month
            (None, "2022-02-01 00:10", 1.0),  # no pickup time
            ("2022-02-28 23:50", "2022-03-01 00:05", 1.0),  # kept: last minutes of the month
        ]
    )
    out, stats = schema.clean(
        df,
        start=datetime(2022, 2, 1),
        end=datetime(2022, 3, 1),
        filters={"duration": Bounds(min=1, max=180)},
    )
    assert out[schema.DURATION].tolist() == [10.0, 60.0, 180.0, 15.0]
    assert stats.rows_read == 9
    assert stats.no_timestamp == 1
    assert stats.outside_period == 2
    assert stats.filtered == {"duration": 2}
    assert stats.rows_kept == 4
    assert out[schema.PICKUP].is_monotonic_increasing


def test_clean_column_filter_drops_missing_values():
    df = frame(
        [
            ("2022-02-01 08:00", "2022-02-01 08:10", 1.0),
            ("2022-02-01 08:00", "2022-02-01 08:10", np.nan),
            ("2022-02-01 08:00", "2022-02-01 08:10", 500.0),
        ]
    )
    out, stats = schema.clean(
        df,
        start=datetime(2022, 2, 1),
        end=datetime(2022, 2, 2),
        filters={"trip_distance": Bounds(min=0, max=100)},
    )
    assert out["trip_distance"].tolist() == [1.0]
    assert stats.filtered == {"trip_distance": 2}


def test_real_month_outside_rows_are_dropped(raw_table):
    df = schema.to_pandas(schema.normalize(raw_table, source="f", taxi_type="green"))
    out, stats = schema.clean(df, start=datetime(2022, 2, 1), end=datetime(2022, 3, 1), filters={})
    assert stats.outside_period > 0  # every TLC file has a few strays
    assert out[schema.PICKUP].min() >= pd.Timestamp("2022-02-01")
    assert out[schema.PICKUP].max() < pd.Timestamp("2022-03-01")
    assert stats.rows_kept + stats.outside_period + stats.no_timestamp == raw_table.num_rows
