"""A deterministic generator of TLC-shaped monthly trip files, for offline demos and tests.

It produces the *raw* TLC layout (the 2021-2022 parquet types, ``lpep_``/``tpep_`` names),
so synthetic data goes through the same normalisation and cleaning as real files: a share of
rows with the dispatch columns (passenger_count, RatecodeID, ...) all null, a few pickups
outside the month (stray 2009 timestamps, the neighbouring months), zero and absurd
distance readings (meter errors of up to 250,000 miles), negative and day-long durations,
fares built from distance and time. The same (seed, taxi type, month, scenarios) always
gives the same table.

**Travel structure.** Durations come from how trips move through a city, so a model of
zones and distance has something real to learn:

* the 265 zones have fixed coordinates (seeded: the same seed, the same city), in four
  areas: ``core`` (the centre), ``inner``, and the outer ring split into ``east`` and
  ``west``; zones near the centre are busier (a skewed popularity);
* a drop-off is near the pickup (one of its 12 nearest zones) about half the time, else
  anywhere by popularity; the distance of a zone pair is fixed (1.3 × the straight line
  plus both zones' own extent), and ``trip_distance`` is that distance with ±12 % noise;
* speed depends on the hour and the weekday (rush hours at 7-9 and 16-18 on weekdays,
  faster nights and weekends) and on congestion by area (the core is slow, the outer ring
  fast); duration = distance / speed + time to pick up and drop off, with a heavy tail
  (about 4 % of trips are held up, some for an hour or more).

On real 2021-01 the default spec's model (zones one-hot + distance, LinearRegression) has a
holdout RMSE 42 % below the mean predictor's; on this generator it is about 35-40 % below
(measured in ``mlops_assets_tests/test_sources.py``).

**Scenarios on a calendar.** ``generate_month(..., scenarios=...)`` takes ``Scenario``
events, each a date range with a few knobs (trips per day, speed, speed by area, the share
of short trips, an area that draws drop-offs). ``CALENDAR`` is the default one, used by the
synthetic trip source (``TRIP_SOURCE=synthetic``, ``make demo`` offline) unless
``SYNTHETIC_SCENARIOS=off``. It is laid out on the months the demo monitors (it trains on
2021-01 and monitors 2021-02, 2021-03, 2022-01..03):

* **storm, 2021-02-01 .. 2021-02-02** (the dates of the real February 2021 blizzard):
  a fifth of the trips, traffic at 55 % of its speed, mostly short trips. Transient: the
  model's error jumps on those days, its predictions move only a little.
* **new district, from 2021-03-08 on** (lasting): a business district opens on the east side
  of the outer ring and draws 35 % of drop-offs (and some pickups), and traffic in the core
  gets slower for good (speeds × 0.7). The model's predictions move (longer trips: prediction
  drift well above 0.20) and its error grows (the core is slower than it learnt); a model
  retrained on the last 28 days learns the new pattern.

**Its own zone lookup.** ``zone_lookup(seed)`` maps each synthetic zone ID to its area
(``Core``, ``Inner``, ``East``, ``West``) the way the TLC's ``taxi_zone_lookup.csv`` maps real
zones to boroughs; the synthetic trip source hands it to monitoring and training in place of
the TLC's, so the new district is a segment (drop-off borough ``East``) that the daily
segment figures must find.

Every other day is quiet: the same city, with a slow seasonal wobble in trip lengths.
"""

from __future__ import annotations

import calendar
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date

import numpy as np
import pyarrow as pa

from mlops_core.segments import ZoneLookup

N_ZONES = 265
NEAR_ZONES = 12  # a "near" drop-off is one of the pickup zone's 12 nearest zones
NEAR_SHARE = 0.5  # share of drop-offs near the pickup on an ordinary day
AREAS = ("core", "inner", "east", "west")
# Congestion: speed factor by area (a trip gets the mean of its two zones' factors).
AREA_SPEED = {"core": 0.85, "inner": 1.1, "east": 1.4, "west": 1.4}
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
# Free-flow speed (mph) by hour: weekdays have two rush hours, weekends none.
# fmt: off
WEEKDAY_MPH = np.array([20, 21, 21, 21, 20, 18, 14, 10, 9.5, 10, 12.5, 13,
                        13, 13, 12.5, 12, 9.5, 9, 9.5, 12, 14, 15, 17, 18.5])
WEEKEND_MPH = np.array([18, 19, 20, 20, 21, 21, 20, 18, 17, 16, 15, 14,
                        13.5, 13.5, 13.5, 14, 14, 14, 14, 14.5, 15, 16, 16.5, 17])
# fmt: on


@dataclass(frozen=True)
class Scenario:
    """An event on the calendar: from ``start`` to ``end`` (inclusive; ``None``: for good).

    On its days: trips per day × ``volume``, every speed × ``speed`` (and × ``area_speed``
    for trips touching an area), ``near_share`` of drop-offs near the pickup (``None``: the
    usual half), and ``attract`` = (area, share): that share of drop-offs (and half of it of
    pickups) goes to the area's zones.
    """

    name: str
    start: date
    end: date | None = None
    volume: float = 1.0
    speed: float = 1.0
    area_speed: dict[str, float] = field(default_factory=dict)
    near_share: float | None = None
    attract: tuple[str, float] | None = None
    description: str = ""

    def covers(self, day: date) -> bool:
        return self.start <= day and (self.end is None or day <= self.end)


STORM = Scenario(
    name="storm",
    start=date(2021, 2, 1),
    end=date(2021, 2, 2),
    volume=0.2,
    speed=0.55,
    near_share=0.6,
    description="a snowstorm: a fifth of the trips, mostly short, at 55 % of the usual speed",
)
NEW_DISTRICT = Scenario(
    name="new district",
    start=date(2021, 3, 8),
    volume=1.0,
    area_speed={"core": 0.6, "east": 0.75},
    attract=("east", 0.35),
    description=(
        "a business district opens on the east of the outer ring and draws 35 % of drop-offs; "
        "traffic in the core is slower for good (speeds x 0.7)"
    ),
)
CALENDAR: tuple[Scenario, ...] = (STORM, NEW_DISTRICT)


@dataclass(frozen=True)
class City:
    """The seed's fixed geography: zone coordinates (miles), areas, popularity, neighbours."""

    xy: np.ndarray  # (N_ZONES, 2)
    extent: np.ndarray  # each zone's own size (miles), the length of a trip inside it
    area: np.ndarray  # index into AREAS
    popularity: np.ndarray  # sums to 1
    near: np.ndarray  # (N_ZONES, NEAR_ZONES) indices of the nearest zones (itself first)

    def distance(self, pu: np.ndarray, do: np.ndarray) -> np.ndarray:
        """Road miles between zone indices: the same pair, the same distance."""
        line = np.hypot(*(self.xy[pu] - self.xy[do]).T)
        return 1.3 * line + 0.5 * (self.extent[pu] + self.extent[do])

    def zones_of(self, area: str) -> np.ndarray:
        return np.flatnonzero(self.area == AREAS.index(area))


def build_city(seed: int) -> City:
    rng = np.random.default_rng([seed, N_ZONES])
    # An elongated city (a bit like New York's boroughs), denser near the centre.
    xy = rng.normal(0.0, 1.0, size=(N_ZONES, 2)) * np.array([2.2, 3.4])
    radius = np.hypot(xy[:, 0] / 2.2, xy[:, 1] / 3.4)  # in "standard deviations"
    area = np.where(radius < 0.7, 0, np.where(radius < 1.4, 1, np.where(xy[:, 0] >= 0, 2, 3)))
    extent = rng.uniform(0.2, 0.8, size=N_ZONES)
    popularity = np.exp(-0.8 * radius) * rng.lognormal(0.0, 1.0, size=N_ZONES)
    popularity = popularity / popularity.sum()
    gaps = np.hypot(*(xy[:, None, :] - xy[None, :, :]).transpose(2, 0, 1))
    near = np.argsort(gaps, axis=1, kind="stable")[:, :NEAR_ZONES]
    return City(xy=xy, extent=extent, area=area, popularity=popularity, near=near)


def zone_lookup(seed: int) -> ZoneLookup:
    """The seed's zone ID -> area (title case), a lookup used as the TLC's zone -> borough one."""
    city = build_city(seed)
    return ZoneLookup(
        f"synthetic(seed={seed})",
        {zone + 1: AREAS[area].title() for zone, area in enumerate(city.area.tolist())},
    )


@dataclass(frozen=True)
class DayConditions:
    """Per day of a month: what the calendar's scenarios make of it."""

    volume: np.ndarray
    speed: np.ndarray
    area_speed: np.ndarray  # (days, len(AREAS))
    near_share: np.ndarray
    attract_area: np.ndarray  # index into AREAS, -1 for none
    attract_share: np.ndarray
    names: list[str]  # the scenarios active that day, comma-separated ("" when quiet)


def day_conditions(days: Sequence[date], scenarios: Sequence[Scenario]) -> DayConditions:
    n = len(days)
    volume, speed = np.ones(n), np.ones(n)
    area_speed = np.ones((n, len(AREAS)))
    near_share = np.full(n, NEAR_SHARE)
    attract_area, attract_share = np.full(n, -1), np.zeros(n)
    names = [""] * n
    for i, day in enumerate(days):
        active = [s for s in scenarios if s.covers(day)]
        names[i] = ", ".join(s.name for s in active)
        for s in active:
            volume[i] *= s.volume
            speed[i] *= s.speed
            for name, factor in s.area_speed.items():
                area_speed[i, AREAS.index(name)] *= factor
            if s.near_share is not None:
                near_share[i] = s.near_share
            if s.attract is not None:
                attract_area[i], attract_share[i] = AREAS.index(s.attract[0]), s.attract[1]
    return DayConditions(volume, speed, area_speed, near_share, attract_area, attract_share, names)


def month_days(month: str) -> list[date]:
    year, mon = (int(part) for part in month.split("-"))
    return [date(year, mon, d) for d in range(1, calendar.monthrange(year, mon)[1] + 1)]


def scenario_days(month: str, scenarios: Sequence[Scenario] = CALENDAR) -> dict[str, str]:
    """``{YYYY-MM-DD: scenario names}`` for the days of ``month`` that some scenario covers."""
    days = month_days(month)
    conditions = day_conditions(days, scenarios)
    return {str(d): name for d, name in zip(days, conditions.names, strict=True) if name}


def scenarios_in(month: str, scenarios: Sequence[Scenario] = CALENDAR) -> list[str]:
    """``["storm 2021-02-01 .. 2021-02-02"]``: each scenario with the days of ``month`` it covers."""
    days = month_days(month)
    out = []
    for s in scenarios:
        covered = [d for d in days if s.covers(d)]
        if covered:
            out.append(f"{s.name} {covered[0]}" + (f" .. {covered[-1]}" if len(covered) > 1 else ""))
    return out


def _pick_zones(rng, city: City, n: int, share: np.ndarray, area: np.ndarray) -> np.ndarray:
    """Zones by popularity; a ``share`` of them (per row) from the row's ``area`` instead."""
    zones = rng.choice(N_ZONES, size=n, p=city.popularity)
    drawn = (rng.random(n) < share) & (area >= 0)
    for a in np.unique(area[drawn]):
        rows = np.flatnonzero(drawn & (area == a))
        members = city.zones_of(AREAS[a])
        weights = city.popularity[members] / city.popularity[members].sum()
        zones[rows] = rng.choice(members, size=len(rows), p=weights)
    return zones


def generate_month(
    taxi_type: str,
    month: str,
    *,
    seed: int = 7,
    trips_per_day: int = 2200,
    scenarios: Sequence[Scenario] = (),
) -> pa.Table:
    """One month of raw TLC-like trips for ``taxi_type`` (``green``/``yellow``), ``YYYY-MM``,
    with the ``scenarios`` whose dates fall in it (none by default; ``CALENDAR`` is the
    synthetic trip source's)."""
    year, mon = (int(part) for part in month.split("-"))
    taxi_code = {"green": 1, "yellow": 2}[taxi_type]
    rng = np.random.default_rng([seed, year, mon, taxi_code])
    days = month_days(month)
    n_days = len(days)
    month_index = (year - 2020) * 12 + mon
    conditions = day_conditions(days, scenarios)
    city = build_city(seed)

    # Trips per day: weekends quieter, Poisson noise, scenarios' volume.
    weekday = np.array([d.weekday() for d in days])
    per_day = rng.poisson(trips_per_day * np.where(weekday >= 5, 0.8, 1.0) * conditions.volume)
    n = int(per_day.sum())
    day = np.repeat(np.arange(n_days), per_day)
    hour = rng.choice(24, size=n, p=HOURLY)
    seconds = rng.integers(0, 3600, size=n)
    start = np.datetime64(f"{year:04d}-{mon:02d}-01T00:00:00", "us")
    pickup = (
        start
        + day.astype("timedelta64[D]").astype("timedelta64[us]")
        + (hour * 3600 + seconds).astype("timedelta64[s]").astype("timedelta64[us]")
    )

    # Zones: pickups by popularity (or the attracting area's), drop-offs near the pickup,
    # in the attracting area, or anywhere by popularity.
    attract_area, attract_share = conditions.attract_area[day], conditions.attract_share[day]
    pu = _pick_zones(rng, city, n, attract_share / 2, attract_area)
    near = city.near[pu, rng.integers(0, NEAR_ZONES, size=n)]
    far = _pick_zones(rng, city, n, attract_share / (1 - conditions.near_share[day]), attract_area)
    do = np.where(rng.random(n) < conditions.near_share[day], near, far)

    # Distances: the pair's road distance with noise and a slow seasonal wobble.
    season = 1.0 + 0.04 * np.sin(month_index / 2.0)
    distance = np.round(city.distance(pu, do) * season * rng.lognormal(0.0, 0.12, size=n), 2)

    # Speed: hour and weekday, congestion by area, the day's scenarios, a trip's own luck.
    weekend = weekday[day] >= 5
    mph = np.where(weekend, WEEKEND_MPH[hour], WEEKDAY_MPH[hour])
    area_factor = (
        AREA_SPEED_ARRAY[city.area[pu]] * conditions.area_speed[day, city.area[pu]]
        + AREA_SPEED_ARRAY[city.area[do]] * conditions.area_speed[day, city.area[do]]
    ) / 2
    mph = mph * area_factor * conditions.speed[day] * rng.lognormal(0.0, 0.2, size=n)
    minutes = distance / mph * 60.0 + rng.gamma(2.0, 1.0, size=n)
    held_up = rng.random(n) < 0.04  # the heavy tail: an accident, a detour, a long wait
    minutes[held_up] *= 1.0 + rng.pareto(2.0, size=int(held_up.sum()))

    # The real files' errors: zero and absurd distance readings, impossible durations.
    distance[rng.random(n) < 0.01] = 0.0
    absurd = rng.random(n) < 0.0005
    distance[absurd] = np.round(rng.uniform(1e3, 2.5e5, size=int(absurd.sum())), 2)
    odd = rng.random(n)
    minutes[odd < 0.004] = rng.uniform(-5.0, 0.9, size=int((odd < 0.004).sum()))
    minutes[odd > 0.997] = rng.uniform(181.0, 1500.0, size=int((odd > 0.997).sum()))
    # Whole seconds, as the TLC's timestamps are (a duration is a multiple of 1/60 minute).
    dropoff = pickup + np.round(minutes * 60.0).astype("int64").astype("timedelta64[s]").astype(
        "timedelta64[us]"
    )

    # A few pickups outside the month: stray 2009 timestamps and the neighbouring month.
    stray = rng.random(n) < 0.0008
    shift_days = rng.choice([-40, -1, 32], size=int(stray.sum()))
    shift = shift_days.astype("timedelta64[D]").astype("timedelta64[us]")
    shift = np.where(shift_days == -40, np.datetime64("2009-01-01", "us") - start, shift)
    pickup[stray] = pickup[stray] + shift
    dropoff[stray] = dropoff[stray] + shift

    return _tlc_table(rng, taxi_type, year, pickup, dropoff, pu + 1, do + 1, distance, minutes, hour)


AREA_SPEED_ARRAY = np.array([AREA_SPEED[a] for a in AREAS])


def _tlc_table(rng, taxi_type, year, pickup, dropoff, pu, do, distance, minutes, hour) -> pa.Table:
    """The trips in the TLC's raw layout, with the columns a model must not use filled in."""
    n = len(pickup)
    rush = np.isin(hour, list(RUSH_HOURS))
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
