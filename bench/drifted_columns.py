"""Benchmark: naming the drifted feature columns, against counting them, in the same run.

Each day is judged twice against the same reference dataset:
(a) the monitoring's report (``drift.compute``): a ``ValueDrift`` per feature with Evidently's
    own drift test, which names the drifted columns;
(b) the report it replaced: the same metrics with ``DriftedColumnsCount`` over the features,
    which only counts them.
The table gives, per model, the days, how often the count of (a) equals (b)'s, which columns
drifted on how many days, and the median seconds per day of each (ratio (a)/(b)). Real data
(TRIP_DATA_DIR, default ../shared/data/nyc-tlc) with the demo's two models (as
``bench/reference_cap.py`` trains them), then the project's generator at yellow-taxi volume
(``--trips-per-day``, default 100,000) for ``--synthetic-days`` days.

    .venv/bin/python bench/drifted_columns.py [--synthetic-days 3] [--trips-per-day 100000]
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import sys
import time
import warnings
from collections import Counter
from datetime import datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import pandas as pd  # noqa: E402

from bench.reference_cap import real_models  # noqa: E402
from mlops_assets.data.sources import TripSource  # noqa: E402
from mlops_assets.monitoring import evidently_metrics as drift  # noqa: E402
from mlops_assets.training import model as M  # noqa: E402
from mlops_core.bundle import PREDICTION  # noqa: E402
from mlops_core.schema import day_keys  # noqa: E402
from mlops_core.specs import PACKAGED_SPECS_DIR, load_spec  # noqa: E402

warnings.filterwarnings("ignore")


def counting_report(features, method: str):
    """The report before the columns were named: DriftedColumnsCount over the features."""
    from evidently import Report
    from evidently.metrics import (
        MAE,
        RMSE,
        DatasetMissingValueCount,
        DriftedColumnsCount,
        MeanError,
        ValueDrift,
    )

    columns = [*features.categorical, *features.numerical]
    return Report(
        [
            ValueDrift(column=PREDICTION, method=method),
            RMSE(),
            MAE(error_distr=False),
            MeanError(),
            DriftedColumnsCount(columns=columns),
            DatasetMissingValueCount(columns=columns),
        ]
    )


def judge(spec, bundle, trips: pd.DataFrame, threshold: float) -> list[dict]:
    """Per day: the drifted columns of (a), the count of (b), and the seconds of each."""
    from evidently import Dataset

    reference = drift.reference_dataset(bundle.reference, bundle.features)
    definition = drift.data_definition(bundle.features)
    keys = day_keys(trips)
    days = []
    for day in sorted(set(keys)):
        frame = trips[keys == day].copy()
        frame[PREDICTION] = bundle.predict(frame)
        t = time.perf_counter()
        metrics, _ = drift.compute(frame, reference, bundle.features, spec.drift_method, threshold)
        named = time.perf_counter() - t
        t = time.perf_counter()
        snapshot = counting_report(bundle.features, spec.drift_method).run(
            Dataset.from_pandas(drift.monitoring_frame(frame, bundle.features), data_definition=definition),
            reference,
        )
        count = next(
            m["value"]["count"]
            for m in snapshot.dict()["metrics"]
            if m["metric_name"].startswith("DriftedColumns")
        )
        counted = time.perf_counter() - t
        days.append(
            {
                "day": day,
                "trips": len(frame),
                "columns": metrics.drifted_column_names,
                "count": int(count),
                "named_s": named,
                "counted_s": counted,
            }
        )
    return days


def row(label: str, days: list[dict]) -> str:
    agree = sum(len(d["columns"]) == d["count"] for d in days)
    by_column = Counter(c for d in days for c in d["columns"])
    drifted = ", ".join(f"{c} {n}" for c, n in by_column.most_common()) or "none"
    named = statistics.median(d["named_s"] for d in days)
    counted = statistics.median(d["counted_s"] for d in days)
    trips = statistics.median(d["trips"] for d in days)
    return (
        f"| {label}, {days[0]['day']}..{days[-1]['day']} | {len(days)} | {trips:,.0f} "
        f"| {agree}/{len(days)} | {drifted} "
        f"| {named:.3f} | {counted:.3f} | {named / counted:.2f} |"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threshold", type=float, default=0.20)
    parser.add_argument("--trips-per-day", type=int, default=100_000)
    parser.add_argument("--synthetic-days", type=int, default=3)
    args = parser.parse_args()
    spec = load_spec(Path(PACKAGED_SPECS_DIR) / "green_taxi_duration.yaml")
    data_dir = os.environ.get("TRIP_DATA_DIR") or str(REPO.parent / "shared" / "data" / "nyc-tlc")
    source = TripSource(kind="local", data_dir=data_dir)

    lines = []
    cap = spec.monitoring.reference_rows
    for label, bundle, trips in real_models(spec, source):
        # the reference as monitoring stores it (real holdouts are under the cap: unchanged)
        bundle = dataclasses.replace(bundle, reference=M.sample_reference(bundle.reference, cap))
        lines.append(row(label or "v1 (2021-01)", judge(spec, bundle, trips, args.threshold)))

    synthetic = TripSource(
        kind="synthetic", synthetic_trips_per_day=args.trips_per_day, synthetic_scenarios=False
    )
    month = synthetic.trips_for(spec, datetime(2022, 1, 1), datetime(2022, 2, 1))[0]
    bundle, _ = M.train_on_month(spec, month)
    del month
    later = synthetic.trips_for(spec, datetime(2022, 2, 1), datetime(2022, 2, 1 + args.synthetic_days))[0]
    lines.append(
        row(
            f"synthetic {args.trips_per_day:,}/day (reference {len(bundle.reference):,})",
            judge(spec, bundle, later, args.threshold),
        )
    )

    print("(a) ValueDrift + test per feature (names the columns) vs (b) DriftedColumnsCount (counts them)")
    print(
        "| model, days judged | days | trips/day (median) | count (a) = (b) | drifted columns: days "
        "| (a) s/day | (b) s/day | (a)/(b) |"
    )
    print("|---|---|---|---|---|---|---|---|")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
