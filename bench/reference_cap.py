"""Benchmark: what capping monitoring's reference (``monitoring.reference_rows``) does to the
daily drift, and to a day's cost, measured in the same run.

Real data (TRIP_DATA_DIR, default ../shared/data/nyc-tlc): the demo's two models, v1 trained
on 2021-01 (monitoring 2021-02, 2021-03 and 2022-01) and a retrain-like model on the 28 days
ending 2022-01-31 with the last 7 as its holdout (monitoring 2022-02 and 2022-03). Every day
is judged against the model's whole holdout and against seeded samples of it capped at each
``--caps`` value (the sampler the training uses); the table gives, per cap, how far the
day's prediction_drift moves (max and median |difference|) and on how many days the alert
decision (drift past ``--threshold``) changes. Then, at yellow-taxi volume, the project's
generator (``--trips-per-day``, default 100,000) gives a month to train on and a few days to
judge against the whole holdout and against the default cap: the drift difference and the
seconds per day of each (the same Evidently report the monitoring asset runs).

    .venv/bin/python bench/reference_cap.py [--caps 5000 10000 20000] [--synthetic-days 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
import warnings
from datetime import datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import pandas as pd  # noqa: E402

from mlops_assets.data.sources import TripSource  # noqa: E402
from mlops_assets.monitoring import evidently_metrics as drift  # noqa: E402
from mlops_assets.training import model as M  # noqa: E402
from mlops_core.bundle import PREDICTION  # noqa: E402
from mlops_core.schema import day_keys  # noqa: E402
from mlops_core.specs import DEFAULT_REFERENCE_ROWS, PACKAGED_SPECS_DIR, load_spec  # noqa: E402

warnings.filterwarnings("ignore")


def day_drifts(spec, bundle, references: dict, trips: pd.DataFrame) -> dict[str, dict]:
    """{day: {reference name: (prediction_drift, seconds)}} for every day of ``trips``."""
    datasets = {name: drift.reference_dataset(ref, bundle.features) for name, ref in references.items()}
    keys = day_keys(trips)
    out = {}
    for day in sorted(set(keys)):
        frame = trips[keys == day].copy()
        frame[PREDICTION] = bundle.predict(frame)
        out[day] = {}
        for name, dataset in datasets.items():
            t = time.perf_counter()
            metrics, _ = drift.compute(frame, dataset, bundle.features, spec.drift_method)
            out[day][name] = (metrics.prediction_drift, time.perf_counter() - t)
    return out


def real_models(spec, source):
    def trips(start, end):
        return source.trips_for(spec, datetime.fromisoformat(start), datetime.fromisoformat(end))[0]

    uncapped = spec.model_copy(
        update={"monitoring": spec.monitoring.model_copy(update={"reference_rows": 10**9})}
    )
    v1, _ = M.train_on_month(uncapped, trips("2021-01-01", "2021-02-01"))
    window = trips("2022-01-04", "2022-02-01")
    holdout_start = pd.Timestamp("2022-01-25")
    train, holdout = M.split_by_days(window, holdout_start)
    v2 = M.train(uncapped, train, holdout)
    return [
        (f"v1 (2021-01, holdout {len(v1.reference):,})", v1, trips("2021-02-01", "2021-04-01")),
        ("", v1, trips("2022-01-01", "2022-02-01")),
        (f"v2 (retrain 2022-01, holdout {len(v2.reference):,})", v2, trips("2022-02-01", "2022-04-01")),
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--caps", type=int, nargs="+", default=[5000, 10000, 20000])
    parser.add_argument("--threshold", type=float, default=0.20)
    parser.add_argument("--trips-per-day", type=int, default=100_000)
    parser.add_argument("--synthetic-days", type=int, default=3)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    spec = load_spec(Path(PACKAGED_SPECS_DIR) / "green_taxi_duration.yaml")
    data_dir = os.environ.get("TRIP_DATA_DIR") or str(REPO.parent / "shared" / "data" / "nyc-tlc")
    source = TripSource(kind="local", data_dir=data_dir)

    # --- real data: every monitored day, whole holdout vs capped samples ---------------------
    results = {cap: [] for cap in args.caps}
    print(f"real data ({data_dir}): prediction_drift against the whole holdout vs a capped sample")
    for label, bundle, trips in real_models(spec, source):
        refs = {
            "whole": bundle.reference,
            **{cap: M.sample_reference(bundle.reference, cap) for cap in args.caps},
        }
        for _day, values in day_drifts(spec, bundle, refs, trips).items():
            whole = values["whole"][0]
            for cap in args.caps:
                results[cap].append((whole, values[cap][0]))
        if label:
            print(f"  {label}")
    table = []
    print(f"\n| cap | days | max abs diff | median abs diff | decisions changed (> {args.threshold}) |")
    print("|---|---|---|---|---|")
    for cap in args.caps:
        diffs = [abs(a - b) for a, b in results[cap]]
        flips = sum((a > args.threshold) != (b > args.threshold) for a, b in results[cap])
        row = {
            "cap": cap,
            "days": len(diffs),
            "max_abs_diff": max(diffs),
            "median_abs_diff": statistics.median(diffs),
            "decisions_changed": flips,
        }
        table.append(row)
        print(f"| {cap:,} | {len(diffs)} | {max(diffs):.4f} | {statistics.median(diffs):.4f} | {flips} |")
    closest = min(abs(a - args.threshold) for a, _ in results[args.caps[0]])
    print(f"closest whole-holdout drift to the threshold: {closest:.4f} away")

    # --- synthetic volume: whole holdout vs the default cap ----------------------------------
    print(f"\nsynthetic volume: {args.trips_per_day:,} trips/day (project generator, seed 7)")
    synthetic = TripSource(
        kind="synthetic", synthetic_trips_per_day=args.trips_per_day, synthetic_scenarios=False
    )
    month = synthetic.trips_for(spec, datetime(2022, 1, 1), datetime(2022, 2, 1))[0]
    uncapped = spec.model_copy(
        update={"monitoring": spec.monitoring.model_copy(update={"reference_rows": 10**9})}
    )
    bundle, _ = M.train_on_month(uncapped, month)
    del month
    later = synthetic.trips_for(spec, datetime(2022, 2, 1), datetime(2022, 2, 1 + args.synthetic_days))[0]
    refs = {"whole": bundle.reference, "capped": M.sample_reference(bundle.reference, DEFAULT_REFERENCE_ROWS)}
    values = day_drifts(spec, bundle, refs, later)
    print(
        f"| day | trips | drift (whole {len(bundle.reference):,}) | drift (cap {DEFAULT_REFERENCE_ROWS:,}) "
        "| s/day whole | s/day capped |"
    )
    print("|---|---|---|---|---|---|")
    keys = day_keys(later)
    synth = []
    for day, v in values.items():
        n = int((keys == day).sum())
        synth.append(
            {
                "day": day,
                "trips": n,
                "whole": v["whole"][0],
                "capped": v["capped"][0],
                "seconds_whole": v["whole"][1],
                "seconds_capped": v["capped"][1],
            }
        )
        print(
            f"| {day} | {n:,} | {v['whole'][0]:.4f} | {v['capped'][0]:.4f} "
            f"| {v['whole'][1]:.2f} | {v['capped'][1]:.2f} |"
        )
    ratio = statistics.mean(r["seconds_whole"] for r in synth) / statistics.mean(
        r["seconds_capped"] for r in synth
    )
    print(
        f"whole/capped time per day: {ratio:.1f}x; "
        f"max drift difference {max(abs(r['whole'] - r['capped']) for r in synth):.4f}"
    )
    if args.json:
        args.json.write_text(json.dumps({"real": table, "synthetic": synth, "whole_over_capped": ratio}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
