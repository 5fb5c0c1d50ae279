"""Benchmark: one month of daily monitoring, three ways, measured in the same run.

(a) one single-run backfill: ``dagster asset materialize --partition-range`` (one process,
    one run: trips → predictions → drift_metrics → dummy_metrics for every day);
(b) one run per partition: the same command once per day (what a multi-run backfill does);
(c) the floor: a plain Python loop with no Dagster that reads the month, predicts and calls
    Evidently per day with the same metrics (drift with the pinned method and the rule's
    threshold, RMSE, MAE, MeanError, a ValueDrift with Evidently's test per feature, missing
    values; also in its own process, imports included).

Prints wall times, the ratios (a)/(c) and (b)/(a). Real data from TRIP_DATA_DIR (default
../shared/data/nyc-tlc). Each variant gets a fresh MLOPS_HOME with the same trained model.

    .venv/bin/python bench/backfill.py [--month 2022-02] [--train-month 2022-01] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
SPEC = "green_taxi_duration"
MONITORING = ["trips", "predictions", "drift_metrics", "dummy_metrics"]

FLOOR = r"""
import sys, time, warnings
warnings.filterwarnings("ignore")
import pandas as pd
from evidently import DataDefinition, Dataset, Regression, Report
from evidently.metrics import MAE, RMSE, DatasetMissingValueCount, MeanError, ValueDrift
from mlops_core.bundle import ModelBundle
bundle_dir, data_file, month = sys.argv[1:4]
bundle = ModelBundle.load(__import__("pathlib").Path(bundle_dir))
cols = ["PULocationID", "DOLocationID", "trip_distance"]
df = pd.read_parquet(data_file)
df["duration"] = (df.lpep_dropoff_datetime - df.lpep_pickup_datetime).dt.total_seconds() / 60
start = pd.Timestamp(month + "-01"); end = start + pd.offsets.MonthBegin(1)
df = df[(df.lpep_pickup_datetime >= start) & (df.lpep_pickup_datetime < end) & df.duration.between(1, 180)]
definition = DataDefinition(numerical_columns=["trip_distance", "prediction", "duration"],
                            categorical_columns=["PULocationID", "DOLocationID"],
                            regression=[Regression(target="duration", prediction="prediction")])
reference = Dataset.from_pandas(bundle.reference[cols + ["prediction", "duration"]],
                                data_definition=definition)
values = []
for day, g in df.groupby(df.lpep_pickup_datetime.dt.normalize()):
    cur = g[cols + ["duration"]].reset_index(drop=True)
    cur["prediction"] = bundle.pipeline.predict(
        [{"PULocationID": str(a), "DOLocationID": str(b), "trip_distance": c}
         for a, b, c in zip(cur.PULocationID, cur.DOLocationID, cur.trip_distance)])
    snap = Report([ValueDrift(column="prediction", method="wasserstein", threshold=0.2), RMSE(tests=[]),
                   MAE(error_distr=False, mean_tests=[], std_tests=[]),
                   MeanError(mean_tests=[], std_tests=[]), *(ValueDrift(column=c) for c in cols),
                   DatasetMissingValueCount(columns=cols, tests=[], share_tests=[])], include_tests=True).run(
        Dataset.from_pandas(cur, data_definition=definition), reference)
    values.append(snap.dict()["metrics"][0]["value"])
print(len(values), sum(values) / len(values))
"""


TRAIN = """
import dagster as dg
import pandas as pd
from mlops_assets.definitions import defs
key = lambda name: dg.AssetKey(["{spec}", name])
start = pd.Timestamp("{month}-01")
end = start + pd.offsets.MonthEnd(0)
tags = {{"dagster/asset_partition_range_start": str(start.date()),
        "dagster/asset_partition_range_end": str(end.date())}}
assets = list(defs.assets)
assert dg.materialize(assets, selection=[key("trips")], resources=defs.resources, tags=tags).success
assert dg.materialize(
    assets, selection=[key("duration_model")], resources=defs.resources, partition_key=str(start.date())
).success
"""


def env_for(home: Path, data_dir: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("METRICS_DATABASE_URL", "MLFLOW_TRACKING_URI")}
    env.update(MLOPS_HOME=str(home), TRIP_DATA_DIR=str(data_dir), DAGSTER_HOME=str(home / "dagster_home"))
    (home / "dagster_home").mkdir(parents=True, exist_ok=True)
    (home / "dagster_home" / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    return env


def train(base: Path, data_dir: Path, train_month: str, timeout: float | None = None) -> None:
    """Train the model once (not timed); every variant starts from a copy of this home."""
    code = TRAIN.format(spec=SPEC, month=train_month)
    out = subprocess.run(
        [sys.executable, "-c", code],
        env=env_for(base, data_dir),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if out.returncode != 0:
        raise SystemExit(f"training on {train_month} failed:\n{out.stderr[-3000:]}")


def fresh_home(base: Path, work: Path, name: str) -> Path:
    home = work / name
    if home.exists():
        shutil.rmtree(home)
    shutil.copytree(base, home)
    return home


def materialize(home: Path, data_dir: Path, partition_args: list[str]) -> float:
    select = ",".join(f"{SPEC}/{n}" for n in MONITORING)
    cmd = [
        str(BIN / "dagster"),
        "asset",
        "materialize",
        "-m",
        "mlops_assets.definitions",
        "--select",
        select,
        *partition_args,
    ]
    started = time.perf_counter()
    out = subprocess.run(cmd, env=env_for(home, data_dir), cwd=REPO, capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    if out.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{out.stderr[-3000:]}")
    return elapsed


def days_of(month: str) -> list[str]:
    import pandas as pd

    start = pd.Timestamp(month + "-01")
    return [str(d.date()) for d in pd.date_range(start, start + pd.offsets.MonthEnd(0))]


def count_rows(home: Path) -> int:
    import sqlite3

    with sqlite3.connect(home / "metrics.db") as conn:
        return conn.execute("select count(*) from dummy_metrics").fetchone()[0]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--month", default="2022-02")
    parser.add_argument("--train-month", default="2022-01")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--skip-per-partition", action="store_true", help="skip (b), the slow one")
    parser.add_argument("--json", help="also write the results here")
    parser.add_argument(
        "--data-dir", default=os.environ.get("TRIP_DATA_DIR") or str(REPO.parent / "shared/data/nyc-tlc")
    )
    args = parser.parse_args()
    data_dir = Path(args.data_dir).resolve()
    days = days_of(args.month)
    work = Path(tempfile.mkdtemp(prefix="bench-backfill-"))
    try:
        base = work / "base"
        print(f"training on {args.train_month} (not timed) ...", flush=True)
        train(base, data_dir, args.train_month)
        bundle_dir = base / "models" / SPEC / "v1"
        data_file = data_dir / f"green_tripdata_{args.month}.parquet"

        single, floor = [], []
        for i in range(args.repeat):
            home = fresh_home(base, work, f"single{i}")
            single.append(materialize(home, data_dir, ["--partition-range", f"{days[0]}...{days[-1]}"]))
            assert count_rows(home) == len(days), "the single-run backfill did not write one row per day"
            started = time.perf_counter()
            subprocess.run(
                [sys.executable, "-c", FLOOR, str(bundle_dir), str(data_file), args.month],
                cwd=REPO,
                check=True,
                capture_output=True,
                env=env_for(home, data_dir),
            )
            floor.append(time.perf_counter() - started)
            print(f"  round {i + 1}: (a) {single[-1]:.1f} s   (c) {floor[-1]:.1f} s", flush=True)

        per_partition = None
        if not args.skip_per_partition:
            home = fresh_home(base, work, "per_partition")
            started = time.perf_counter()
            for day in days:
                materialize(home, data_dir, ["--partition", day])
            per_partition = time.perf_counter() - started
            assert count_rows(home) == len(days)

        a, c = statistics.median(single), statistics.median(floor)
        print()
        print(
            f"one month of daily monitoring ({args.month}, {len(days)} days), "
            f"model trained on {args.train_month}"
        )
        print(f"{'variant':<48} {'wall time (s)':>14}  runs")
        print(f"{'(a) single-run backfill (median of ' + str(args.repeat) + ')':<48} {a:>14.1f}  1")
        if per_partition is not None:
            print(f"{'(b) one run per partition':<48} {per_partition:>14.1f}  {len(days)}")
        print(f"{'(c) floor: plain loop + Evidently (median of ' + str(args.repeat) + ')':<48} {c:>14.1f}  -")
        print()
        print(f"(a)/(c) = {a / c:.2f}   (goal: <= 2.0)")
        if per_partition is not None:
            print(f"(b)/(a) = {per_partition / a:.1f}")
        print(
            f"all (a): {', '.join(f'{x:.1f}' for x in single)};  "
            f"all (c): {', '.join(f'{x:.1f}' for x in floor)}"
        )
        if args.json:
            Path(args.json).write_text(
                json.dumps(
                    {
                        "month": args.month,
                        "days": len(days),
                        "single_run_s": a,
                        "per_partition_s": per_partition,
                        "floor_s": c,
                        "single_runs": single,
                        "floors": floor,
                    }
                )
            )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
