"""The ``trips`` asset (one day of cleaned trips per partition) and its checks."""

from datetime import date

import dagster as dg
import pandas as pd

from mlops_assets import constants as C
from mlops_assets.data.sources import TripSource
from mlops_assets.keys import trips_key
from mlops_assets.partitions import daily_backfill_policy, daily_partitions
from mlops_core import schema
from mlops_core.specs import ModelSpec


def split_by_day(df: pd.DataFrame, keys: list[str]) -> dict[str, pd.DataFrame]:
    """One frame per partition key (an empty frame with the same columns on a day without trips)."""
    days = schema.day_keys(df)
    out = {}
    for key in keys:
        out[key] = df[days == key].reset_index(drop=True)
    return out


def schema_problems(df: pd.DataFrame) -> list[str]:
    problems = []
    for column, dtype in schema.PANDAS_DTYPES.items():
        if column not in df.columns:
            problems.append(f"missing column {column}")
        elif str(df[column].dtype) != dtype:
            problems.append(f"{column} is {df[column].dtype}, expected {dtype}")
    return problems


def trip_checks(spec: ModelSpec, by_day: dict[str, pd.DataFrame]) -> list[dg.AssetCheckResult]:
    key = trips_key(spec)
    frames = list(by_day.values())
    problems = sorted({p for frame in frames for p in schema_problems(frame)})
    empty_weekdays = [k for k, f in by_day.items() if len(f) == 0 and date.fromisoformat(k).weekday() < 5]
    bounds = spec.filters.get(schema.DURATION)
    out_of_bounds = 0
    if bounds is not None:
        for frame in frames:
            d = frame[schema.DURATION]
            bad = d.isna()
            if bounds.min is not None:
                bad |= d < bounds.min
            if bounds.max is not None:
                bad |= d > bounds.max
            out_of_bounds += int(bad.sum())
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
            passed=not empty_weekdays,
            metadata={
                "empty_weekdays": ", ".join(empty_weekdays) or "none",
                "partitions_checked": len(by_day),
            },
            description=(f"no trips on weekday(s) {', '.join(empty_weekdays)}" if empty_weekdays else None),
        ),
        dg.AssetCheckResult(
            asset_key=key,
            check_name=C.CHECK_TRIPS_DURATION,
            passed=out_of_bounds == 0,
            metadata={
                "rows_out_of_bounds": out_of_bounds,
                "bounds": f"[{bounds.min}, {bounds.max}] minutes" if bounds else "none",
            },
        ),
    ]


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
        window = context.partition_time_window
        start, end = window.start.replace(tzinfo=None), window.end.replace(tzinfo=None)
        frame, stats, files = trip_source.trips_for(spec, start, end)
        by_day = split_by_day(frame, list(context.partition_keys))
        for key_, day in by_day.items():
            context.add_asset_metadata(
                {"rows": dg.MetadataValue.int(len(day)), "partition_day": key_}, partition_key=key_
            )
        context.log.info(
            "%s: %d trips over %d day(s) from %s",
            key.to_user_string(),
            len(frame),
            len(by_day),
            ", ".join(files),
        )
        return dg.MaterializeResult(
            value=by_day,
            metadata={
                **{k: dg.MetadataValue.int(v) for k, v in stats.as_metadata().items()},
                "source_files": ", ".join(files),
                "source": trip_source.describe(),
            },
            check_results=trip_checks(spec, by_day),
        )

    return trips
