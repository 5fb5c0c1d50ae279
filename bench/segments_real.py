"""Where the model is wrong on real data (issue 24): the README's segment table.

The default spec's model trained on 2021-01 exactly as the ``duration_model`` asset trains it
(first half of the month, the second half its holdout, per-segment holdout RMSE stored with
it), then every day of a month it monitors scored and broken down by segment exactly as
``drift_metrics`` does (``score_day``, ``day_segments``, the TLC's zone lookup). Printed: the
month pooled per segment (trips, RMSE, the holdout's RMSE on the segment, mean error, share of
the month's excess squared error: the days' SSE and expected SSE summed), and the top
segments of the month's worst day as an alert email names them.

    .venv/bin/python bench/segments_real.py --data-dir ../shared/data/nyc-tlc --month 2022-01
"""

from __future__ import annotations

import argparse
import sys
from datetime import datetime
from pathlib import Path

import pandas as pd

from mlops_assets.data.sources import TripSource
from mlops_assets.monitoring.scoring import score_day
from mlops_assets.monitoring.segments import segment_rows, top_segments_lines
from mlops_assets.training import model as M
from mlops_core.segments import day_segments, describe_segment, tlc_zones
from mlops_core.specs import load_specs


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", required=True, help="the TLC's monthly files (TRIP_DATA_DIR)")
    parser.add_argument("--month", default="2022-01", help="the month monitored")
    parser.add_argument("--dimensions", nargs="+", default=["dropoff_borough", "pickup_borough", "hour_band"])
    args = parser.parse_args()

    spec = next(s for s in load_specs() if s.name == "green_taxi_duration")
    source = TripSource(kind="local", data_dir=str(Path(args.data_dir).resolve()))
    zones = tlc_zones()
    train_start = datetime.fromisoformat(spec.training.month + "-01")
    month_rows, _, _ = source.trips_for(spec, train_start, train_start + pd.offsets.MonthBegin(1))
    bundle, _ = M.train_on_month(spec, month_rows, zones=zones)
    start = datetime.fromisoformat(args.month + "-01")
    trips, _, _ = source.trips_for(spec, start, start + pd.offsets.MonthBegin(1))
    min_rows = spec.monitoring.segment_min_rows
    days, worst = [], None
    for day, frame in trips.groupby(trips["pickup_datetime"].dt.date):
        scored = score_day(spec, frame, bundle, "v1")
        rows = segment_rows(
            day_segments(scored, spec.monitoring.segments, zones, bundle.info.holdout_segments), "1"
        )
        for r in rows:
            r["day"] = day
        days += rows
        error = scored["prediction"] - scored["duration"]
        ratio = float((error**2).mean() ** 0.5) / bundle.info.holdout.rmse
        if len(scored) >= 500 and (worst is None or ratio > worst[1]):
            worst = (day, ratio, rows)
    table = pd.DataFrame(days)
    table = table[table["n_scored"] > 0]
    table["sse"] = table["n_scored"] * table["rmse"] ** 2
    table["expected"] = table["n_scored"] * table["holdout_rmse"] ** 2
    table["err"] = table["n_scored"] * table["mean_error"]
    print(
        f"model trained on {spec.training.month} (holdout RMSE {bundle.info.holdout.rmse:.2f} min), "
        f"monitored {args.month}: {table['day'].nunique()} days, {len(trips):,} trips"
    )
    for dimension in args.dimensions:
        part = (
            table[table["dimension"] == dimension]
            .groupby("segment")[["n_scored", "sse", "expected", "err"]]
            .sum()
        )
        part = part[part["n_scored"] >= min_rows]
        excess = (part["sse"] - part["expected"]).clip(lower=0)
        print()
        name = describe_segment(dimension, "").strip()
        print(f"| {name} | trips | RMSE | holdout RMSE | mean error | excess share |")
        print("|---|---:|---:|---:|---:|---:|")
        for segment, r in part.sort_values("n_scored", ascending=False).iterrows():
            print(
                f"| {segment} | {int(r.n_scored):,} | {(r.sse / r.n_scored) ** 0.5:.2f} | "
                f"{(r.expected / r.n_scored) ** 0.5:.2f} | {r.err / r.n_scored:+.2f} | "
                f"{excess[segment] / excess.sum() * 100:.0f} % |"
            )
    day, ratio, rows = worst
    print()
    print(f"worst day {day} (RMSE {ratio:.2f}x the holdout's), as the alert email names it:")
    for line in top_segments_lines(rows, spec.name, day, min_rows=min_rows):
        print(f"  {line}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
