"""The ``trips`` asset (one day of cleaned trips per partition) and its checks."""

from collections.abc import Iterator
from datetime import date

import dagster as dg
import pandas as pd

from mlops_assets import constants as C
from mlops_assets.data.sources import TripSource
from mlops_assets.keys import trips_key
from mlops_assets.lib.io import DayStream
from mlops_assets.partitions import daily_backfill_policy, daily_partitions
from mlops_core import schema
from mlops_core.specs import ModelSpec


def schema_problems(df: pd.DataFrame) -> list[str]:
    problems = []
    for column, dtype in schema.PANDAS_DTYPES.items():
        if column not in df.columns:
            problems.append(f"missing column {column}")
        elif str(df[column].dtype) != dtype:
            problems.append(f"{column} is {df[column].dtype}, expected {dtype}")
    return problems


class TripTally:
    """What the trips checks judge, gathered day by day as a run's days stream past (nothing
    of a day is kept but its counts)."""

    def __init__(self, spec: ModelSpec):
        self.spec = spec
        self.days = 0
        self.problems: set[str] = set()
        self.empty_weekdays: list[str] = []
        self.out_of_bounds = 0

    def add(self, key: str, frame: pd.DataFrame) -> None:
        self.days += 1
        self.problems.update(schema_problems(frame))
        if len(frame) == 0 and date.fromisoformat(key).weekday() < 5:
            self.empty_weekdays.append(key)
        bounds = self.spec.filters.get(schema.DURATION)
        if bounds is not None:
            d = frame[schema.DURATION]
            bad = d.isna()
            if bounds.min is not None:
                bad |= d < bounds.min
            if bounds.max is not None:
                bad |= d > bounds.max
            self.out_of_bounds += int(bad.sum())

    def check_results(self) -> list[dg.AssetCheckResult]:
        key = trips_key(self.spec)
        bounds = self.spec.filters.get(schema.DURATION)
        problems = sorted(self.problems)
        return [
            dg.AssetCheckResult(
                asset_key=key,
                check_name=C.CHECK_TRIPS_SCHEMA,
                passed=not problems,
                metadata={"problems": "; ".join(problems) or "none"},
            ),
            dg.AssetCheckResult(
                asset_key=key,
                check_name=C.CHECK_TRIPS_NOT_EMPTY,
                passed=not self.empty_weekdays,
                metadata={
                    "empty_weekdays": ", ".join(self.empty_weekdays) or "none",
                    "partitions_checked": self.days,
                },
                description=(
                    f"no trips on weekday(s) {', '.join(self.empty_weekdays)}"
                    if self.empty_weekdays
                    else None
                ),
            ),
            dg.AssetCheckResult(
                asset_key=key,
                check_name=C.CHECK_TRIPS_DURATION,
                passed=self.out_of_bounds == 0,
                metadata={
                    "rows_out_of_bounds": self.out_of_bounds,
                    "bounds": f"[{bounds.min}, {bounds.max}] minutes" if bounds else "none",
                },
            ),
        ]


def stream_days(
    context: dg.AssetExecutionContext, spec: ModelSpec, trip_source: TripSource, tally: TripTally
) -> Iterator[tuple[str, pd.DataFrame]]:
    """The run's days, read, cleaned and handed on (and stored) one at a time
    (``TripSource.days``). What was read and dropped goes into the materialization's metadata
    at the end."""
    window = context.partition_time_window
    start, end = window.start.replace(tzinfo=None), window.end.replace(tzinfo=None)
    stats, files, total = schema.CleanStats(), [], 0
    for item in trip_source.days(spec, start, end):
        key, day_stats, origin, frame = item[0], item[2], item[3], [item[1]]
        del item
        stats, total = stats.add(day_stats), total + len(frame[0])
        if origin not in files:
            files.append(origin)
        tally.add(key, frame[0])
        context.add_asset_metadata(
            {"rows": dg.MetadataValue.int(len(frame[0])), "partition_day": key}, partition_key=key
        )
        yield key, frame.pop()  # handed on, not kept here while the next day is read
    context.add_asset_metadata(
        {
            **{k: dg.MetadataValue.int(v) for k, v in stats.as_metadata().items()},
            "source_files": ", ".join(files),
            "source": trip_source.describe(),
        }
    )
    context.log.info(
        "%s: %d trips over %d day(s) from %s",
        trips_key(spec).to_user_string(),
        total,
        len(context.partition_keys),
        ", ".join(files),
    )


def build_trips_asset(spec: ModelSpec) -> dg.AssetsDefinition:
    key = trips_key(spec)

    @dg.asset(
        key=key,
        group_name=spec.name,
        partitions_def=daily_partitions,
        backfill_policy=daily_backfill_policy(spec),
        io_manager_key=C.PARQUET_IO,
        kinds={C.KIND_PANDAS, C.KIND_PARQUET},
        owners=list(spec.owners),
        tags={"stage": "data", "taxi_type": spec.taxi_type},
        description=(
            f"One day of cleaned NYC {spec.taxi_type} taxi trips: canonical schema, pickups inside "
            "the day, `duration` in minutes within the spec's bounds. Read from the TLC's monthly "
            "files (downloaded and cached, or TRIP_DATA_DIR)."
        ),
        check_specs=[
            dg.AssetCheckSpec(C.CHECK_TRIPS_SCHEMA, asset=key, description="Canonical columns and dtypes"),
            dg.AssetCheckSpec(
                C.CHECK_TRIPS_NOT_EMPTY, asset=key, description="At least one trip on every weekday"
            ),
            dg.AssetCheckSpec(
                C.CHECK_TRIPS_DURATION,
                asset=key,
                description="Every duration inside the spec's bounds",
            ),
        ],
    )
    def trips(context: dg.AssetExecutionContext, trip_source: TripSource):
        # (no return annotation: Dagster would read MaterializeResult as "no value to store")
        tally = TripTally(spec)
        days = DayStream(context.partition_keys, stream_days(context, spec, trip_source, tally))
        yield dg.MaterializeResult(value=days)  # stored, and so read, one day at a time
        yield from tally.check_results()

    return trips
