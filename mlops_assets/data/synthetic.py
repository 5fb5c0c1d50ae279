"""A deterministic generator of TLC-shaped monthly trip files, for offline demos and tests.

It produces the *raw* TLC layout (the 2021-2022 parquet types, ``lpep_``/``tpep_`` names),
so synthetic data goes through the same normalisation and cleaning as real files. The
distributions are modelled on the real green taxi files: a daily and hourly rhythm, a
skewed zone popularity, log-normal distances with the real data's absurd outliers,
rush-hour speeds, fares built from distance and time, a share of rows with the dispatch
columns (passenger_count, RatecodeID, ...) all null, and a few pickups outside the month.
The same (seed, taxi type, month) always gives the same table.
"""

from __future__ import annotations

import calendar

import numpy as np
import pyarrow as pa

N_ZONES = 265
# Relative trip volume by hour of day (0..23), shaped like the real green taxi files.
HOURLY = np.array(
    [
        2.2,
        1.5,
        1.0,
        0.8,
        0.7,
        0.9,
        1.8,
        3.2,
        4.4,
        4.6,
        4.6,
        4.8,
        5.0,
        5.2,
        5.6,
        6.0,
        6.2,
        6.3,
        6.0,
        5.2,
        4.4,
        3.8,
        3.3,
        2.8,
    ]
)
HOURLY = HOURLY / HOURLY.sum()
RUSH_HOURS = {7, 8, 9, 16, 17, 18}


def _zone_weights(seed: int) -> np.ndarray:
    """Zipf-like popularity over a seed-fixed ordering of the zones (stable across months)."""
    rng = np.random.default_rng([seed, 265])
    ranks = rng.permutation(N_ZONES) + 1
    weights = 1.0 / ranks**1.1
    return weights / weights.sum()


def generate_month(
    taxi_type: str,
    month: str,
    *,
    seed: int = 7,
    trips_per_day: int = 2200,
) -> pa.Table:
    """One month of raw TLC-like trips for ``taxi_type`` (``green``/``yellow``), ``YYYY-MM``."""
    year, mon = (int(part) for part in month.split("-"))
    taxi_code = {"green": 1, "yellow": 2}[taxi_type]
    rng = np.random.default_rng([seed, year, mon, taxi_code])
    days = calendar.monthrange(year, mon)[1]
    month_index = (year - 2020) * 12 + mon

    # Trips per day: weekends quieter, Poisson noise.
    weekday = np.array([calendar.weekday(year, mon, d + 1) for d in range(days)])
    per_day = rng.poisson(trips_per_day * np.where(weekday >= 5, 0.8, 1.0))
    n = int(per_day.sum())
    day = np.repeat(np.arange(days), per_day)
    hour = rng.choice(24, size=n, p=HOURLY)
    seconds = rng.integers(0, 3600, size=n)
    start = np.datetime64(f"{year:04d}-{mon:02d}-01T00:00:00", "us")
    pickup = (
        start
        + day.astype("timedelta64[D]").astype("timedelta64[us]")
        + (hour * 3600 + seconds).astype("timedelta64[s]").astype("timedelta64[us]")
    )

    zones = _zone_weights(seed)
    pu = rng.choice(N_ZONES, size=n, p=zones) + 1
    # Half of the drop-offs stay near the pickup zone, the rest follow overall popularity.
    near = np.clip(pu + rng.integers(-8, 9, size=n), 1, N_ZONES)
    do = np.where(rng.random(n) < 0.5, near, rng.choice(N_ZONES, size=n, p=zones) + 1)

    # Distances: log-normal, a slow seasonal drift, some zeros and a few absurd readings.
    drift = 0.06 * np.sin(month_index / 2.0)
    distance = np.round(rng.lognormal(np.log(2.4) + drift, 0.8, size=n), 2)
    distance[rng.random(n) < 0.01] = 0.0
    absurd = rng.random(n) < 0.0005
    distance[absurd] = np.round(rng.uniform(1e3, 2.5e5, size=int(absurd.sum())), 2)

    rush = np.isin(hour, list(RUSH_HOURS))
    speed_mph = rng.lognormal(np.log(np.where(rush, 9.0, 12.5)), 0.35, size=n)
    minutes = np.minimum(distance, 60.0) / speed_mph * 60.0 + rng.gamma(2.0, 1.5, size=n)
    odd = rng.random(n)
    minutes[odd < 0.004] = rng.uniform(-5.0, 0.9, size=int((odd < 0.004).sum()))
    minutes[odd > 0.997] = rng.uniform(181.0, 1500.0, size=int((odd > 0.997).sum()))
    dropoff = pickup + (minutes * 60e6).astype("int64").astype("timedelta64[us]")

    # A few pickups outside the month: stray 2009 timestamps and the neighbouring month.
    stray = rng.random(n) < 0.0008
    shift_days = rng.choice([-40, -1, 32], size=int(stray.sum()))
    shift = shift_days.astype("timedelta64[D]").astype("timedelta64[us]")
    shift = np.where(shift_days == -40, np.datetime64("2009-01-01", "us") - start, shift)
    pickup[stray] = pickup[stray] + shift
    dropoff[stray] = dropoff[stray] + shift

    # Street-hail vs dispatch: in a share of rows the dispatch columns are all null.
    dispatch_null = rng.random(n) < (0.10 if year >= 2022 else 0.45)
    passengers = rng.choice([1.0, 2.0, 3.0, 4.0, 5.0, 6.0], size=n, p=[0.82, 0.09, 0.03, 0.01, 0.03, 0.02])
    ratecode = rng.choice([1.0, 1.0, 1.0, 1.0, 5.0], size=n)
    payment = rng.choice([1.0, 1.0, 2.0, 2.0, 3.0], size=n)
    trip_type = np.where(ratecode == 5.0, 2.0, 1.0)
    congestion = np.where(rng.random(n) < 0.3, 2.75, 0.0)
    flag = np.where(rng.random(n) < 0.005, "Y", "N").astype(object)
    for array in (passengers, ratecode, payment, trip_type, congestion):
        array[dispatch_null] = np.nan
    flag[dispatch_null] = None

    fare = np.round(2.5 + 2.5 * np.minimum(distance, 60.0) + 0.5 * np.clip(minutes, 0, None), 2)
    extra = np.where(hour >= 20, 0.5, 0.0) + np.where(rush, 1.0, 0.0)
    mta = np.full(n, 0.5)
    tip = np.round(np.where(payment == 1.0, fare * rng.uniform(0.1, 0.25, size=n), 0.0), 2)
    tolls = np.where(rng.random(n) < 0.03, 6.55, 0.0)
    improvement = np.full(n, 0.3)
    total = np.round(fare + extra + mta + tip + tolls + improvement + np.nan_to_num(congestion), 2)

    pickup_name, dropoff_name = {
        "green": ("lpep_pickup_datetime", "lpep_dropoff_datetime"),
        "yellow": ("tpep_pickup_datetime", "tpep_dropoff_datetime"),
    }[taxi_type]
    order = np.argsort(pickup, kind="stable")
    columns = {
        "VendorID": pa.array(rng.choice([1, 2], size=n, p=[0.2, 0.8]), pa.int64()),
        pickup_name: pa.array(pickup, pa.timestamp("us")),
        dropoff_name: pa.array(dropoff, pa.timestamp("us")),
        "store_and_fwd_flag": pa.array(flag, pa.string()),
        "RatecodeID": pa.array(ratecode, pa.float64(), from_pandas=True),
        "PULocationID": pa.array(pu, pa.int64()),
        "DOLocationID": pa.array(do, pa.int64()),
        "passenger_count": pa.array(passengers, pa.float64(), from_pandas=True),
        "trip_distance": pa.array(distance, pa.float64()),
        "fare_amount": pa.array(fare, pa.float64()),
        "extra": pa.array(extra, pa.float64()),
        "mta_tax": pa.array(mta, pa.float64()),
        "tip_amount": pa.array(tip, pa.float64()),
        "tolls_amount": pa.array(tolls, pa.float64()),
        "improvement_surcharge": pa.array(improvement, pa.float64()),
        "total_amount": pa.array(total, pa.float64()),
        "payment_type": pa.array(payment, pa.float64(), from_pandas=True),
        "congestion_surcharge": pa.array(congestion, pa.float64(), from_pandas=True),
    }
    if taxi_type == "green":
        columns["ehail_fee"] = pa.nulls(n)
        columns["trip_type"] = pa.array(trip_type, pa.float64(), from_pandas=True)
    else:
        columns["airport_fee"] = pa.array(np.where(rng.random(n) < 0.05, 1.25, 0.0), pa.float64())
    table = pa.table(columns).take(pa.array(order))
    # Same column order as the TLC's green files.
    order_names = [
        "VendorID",
        pickup_name,
        dropoff_name,
        "store_and_fwd_flag",
        "RatecodeID",
        "PULocationID",
        "DOLocationID",
        "passenger_count",
        "trip_distance",
        "fare_amount",
        "extra",
        "mta_tax",
        "tip_amount",
        "tolls_amount",
        "ehail_fee",
        "improvement_surcharge",
        "total_amount",
        "payment_type",
        "trip_type",
        "congestion_surcharge",
        "airport_fee",
    ]
    return table.select([c for c in order_names if c in table.column_names])
