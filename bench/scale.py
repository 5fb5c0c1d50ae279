"""Benchmark: daily monitoring at yellow-taxi volume (issue 15), measured in one invocation.

1. Data: the months it needs, written by the project's generator (``generate_month`` with the
   synthetic source's scenario calendar, seed 7: the same trips ``TRIP_SOURCE=synthetic
   SYNTHETIC_TRIPS_PER_DAY=<volume>`` gives) as TLC parquet files in a temporary bench
   folder, never in the repo; the runs read them through ``TRIP_DATA_DIR``, so generating is
   not part of any timing. The default spec is trained on a synthetic month (2022-01) through
   the real assets (not timed); its model is in effect from the next day on.
2. Single runs: a 7-day and an 89-day range (from 2022-02-01) of the monitoring job's assets,
   each one ``dagster asset materialize --partition-range`` in its own process from a copy of
   the trained MLOPS_HOME: wall time, per-day cost (time / days), the marginal cost of a day
   ((t_long - t_short) / (long - short)) and peak RSS. Peak RSS is the kernel's figure for that
   one process: ``os.wait4``'s rusage ``ru_maxrss`` (it covers the process and any process
   it waited for; the runs use the in-process executor), taken by a small launcher process
   that starts the run. The kernel counts in a forked child the memory of the process it was
   forked from, so forked straight from this one (which generated the data) the run would
   report this process's size whenever that is larger than its own.
3. The plain Evidently loop, in its own process: the monitoring report of
   ``mlops_assets/monitoring/drift.py`` (``drift.compute``: the same metrics, the same
   pinned drift method) run day by day over the short range's days, scored beforehand, with no
   Dagster and no IO in the timing, against (a) the reference the model's monitoring uses and
   (b) a seeded 100,000-row sample of the model's holdout (the issue's comparison). Printed: the
   ratio of the asset's marginal per-day cost to the loop's (target <= 1.5) and the 89-day
   run's peak RSS over the 7-day run's (target <= 1.3).
4. A year at 20,000 trips a day through a running daemon (``dagster dev``: webserver +
   daemon, on a bench instance with the run queue `make dev` uses,
   ``mlops_assets/local_instance.yaml``), launched as the UI launches a partition backfill
   (GraphQL ``launchPartitionBackfill``), twice: split into runs of ``--days-per-run`` days
   (passed to the code location as ``MONITORING_BACKFILL_DAYS_PER_RUN``), and as one run
   (the variable unset). For each: the number of runs, the most runs that ran at once (from the
   runs' start and end times), the end-to-end time (launch to the backfill's final status,
   including the backfill daemon's loop) and the runs' own span, and a check that
   ``dummy_metrics`` has exactly one row per day of the year.

5. Segments (issue 24), in its own process: each of the short range's days, scored beforehand,
   goes through what ``drift_metrics`` and ``dummy_metrics`` do for a day (Evidently's
   figures, the HTML report, the row written) without and then with the day's segment
   figures (computed, appended to the report, tabled for the metadata, carried as JSON and
   written to ``segment_metrics``), alternating, ``--repeats`` times; printed: the ratio of
   the medians (target <= 1.10). ``--segments-only`` runs only this part.

Every wait has a timeout. Quick run (small volumes, a few minutes):

    .venv/bin/python bench/scale.py --trips-per-day 5000 --short-days 7 --long-days 14 \\
        --year-trips-per-day 2000 --year-days 90

Full run (what BENCHMARKS.md records): ``.venv/bin/python bench/scale.py``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

import yaml
from backfill import BIN, REPO, SPEC, env_for, fresh_home, train
from support import (
    BACKFILL_STATUS,
    FINISHED,
    LAUNCH_BACKFILL,
    free_port,
    start_dagster_dev,
    stop_process,
    wait_for,
    wait_http,
)

from mlops_assets import local_instance

# The code location's setting for splitting a backfill into runs of at most N days (settings.py).
DAYS_PER_RUN_VAR = "MONITORING_BACKFILL_DAYS_PER_RUN"
FIRST_DAY = "2022-02-01"  # the first day the model trained on 2022-01 is in effect
GIB = 1024**3


# --- data -------------------------------------------------------------------------------------
def days_from(first: str, n: int) -> list[str]:
    start = date.fromisoformat(first)
    return [str(start + timedelta(days=i)) for i in range(n)]


def bench_env(home: Path, data_dir: Path, days_per_run: int | None = None) -> dict:
    """The environment of a bench process: ``backfill.env_for`` (its own MLOPS_HOME, DAGSTER_HOME
    and stores), the generated files as the trip source, the split setting only when asked."""
    env = env_for(home, data_dir)
    env["TRIP_SOURCE"] = "local"
    env.pop(DAYS_PER_RUN_VAR, None)
    if days_per_run:
        env[DAYS_PER_RUN_VAR] = str(days_per_run)
    return env


def months_of(days: list[str]) -> list[str]:
    return sorted({d[:7] for d in days})


def generate(folder: Path, months: list[str], trips_per_day: int) -> Path:
    """The months as TLC files in ``folder`` (kept there: a second call only adds new months)."""
    import pyarrow.parquet as pq

    from mlops_assets.data.sources import file_name
    from mlops_assets.data.synthetic import CALENDAR, generate_month

    folder.mkdir(parents=True, exist_ok=True)
    for month in months:
        path = folder / file_name("green", month)
        if not path.is_file():
            started = time.perf_counter()
            table = generate_month("green", month, trips_per_day=trips_per_day, scenarios=CALENDAR)
            pq.write_table(table, path.with_suffix(".part"))
            path.with_suffix(".part").replace(path)
            print(
                f"  generated {path.name}: {table.num_rows:,} trips in {time.perf_counter() - started:.1f} s",
                flush=True,
            )
    return folder


# --- one measured child process ---------------------------------------------------------------
# Runs argv[2:], writes its peak RSS (KiB) to argv[1] and exits with its exit code. A forked
# child's ru_maxrss starts at its parent's RSS, so the run is forked from this small process.
LAUNCHER = (
    "import os, subprocess, sys; p = subprocess.Popen(sys.argv[2:]); _, st, ru = os.wait4(p.pid, 0); "
    "open(sys.argv[1], 'w').write(str(ru.ru_maxrss)); sys.exit(os.waitstatus_to_exitcode(st))"
)


def measured(cmd: list[str], env: dict, log: Path, timeout: float) -> tuple[float, int]:
    """Run ``cmd`` to the end (killed after ``timeout`` s); its wall time and peak RSS (bytes)."""
    peak = log.with_suffix(".maxrss")
    peak.unlink(missing_ok=True)
    with open(log, "wb") as out:
        started = time.perf_counter()
        proc = subprocess.Popen(
            [sys.executable, "-S", "-c", LAUNCHER, str(peak), *cmd],
            cwd=REPO,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        try:
            while True:
                pid, status, _ = os.wait4(proc.pid, os.WNOHANG)
                if pid:
                    break
                if time.monotonic() > deadline:
                    raise SystemExit(f"timed out after {timeout:.0f} s: {' '.join(cmd)} (log: {log})")
                time.sleep(0.2)
        except BaseException:  # a timeout or Ctrl-C: nothing of the child's group is left running
            os.killpg(proc.pid, signal.SIGKILL)
            os.wait4(proc.pid, 0)
            proc.returncode = -9
            raise
        elapsed = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{log.read_text()[-3000:]}")
    return elapsed, int(peak.read_text()) * 1024  # Linux reports KiB


def child_json(args: list[str], env: dict, timeout: float) -> dict:
    """Run this file in a child mode (``_keys``, ``_loop``) and return the JSON it prints last."""
    out = subprocess.run(
        [sys.executable, __file__, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout
    )
    if out.returncode != 0:
        raise SystemExit(f"bench/scale.py {args[0]} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def monitoring_keys(env: dict) -> list[str]:
    """The asset keys of the monitoring job (``metrics_backfill_to_postgres``) of the spec, as
    the code location defines them (whatever the assets are called)."""
    return child_json(["_keys"], env, timeout=300)["keys"]


def metrics_days(home: Path) -> tuple[int, set[str]]:
    """Rows of ``dummy_metrics`` for the spec, and the distinct days they cover."""
    with sqlite3.connect(home / "metrics.db") as conn:
        rows = conn.execute("select timestamp from dummy_metrics where model_name = ?", (SPEC,)).fetchall()
    return len(rows), {str(r[0])[:10] for r in rows}


def check_one_row_per_day(home: Path, days: list[str]) -> str:
    n, covered = metrics_days(home)
    if n != len(days) or covered != set(days):
        raise SystemExit(
            f"dummy_metrics: {n} rows over {len(covered)} days, expected one row for each of {len(days)} days"
        )
    return f"{n} rows, one per day"


# --- 2. single runs ---------------------------------------------------------------------------
def single_run(base: Path, work: Path, data_dir: Path, keys: list[str], days: list[str], timeout: float):
    home = fresh_home(base, work, f"single-{len(days)}d")
    env = bench_env(home, data_dir)
    cmd = [
        str(BIN / "dagster"),
        "asset",
        "materialize",
        "-m",
        "mlops_assets.definitions",
        "--select",
        ",".join(keys),
        "--partition-range",
        f"{days[0]}...{days[-1]}",
    ]
    wall, rss = measured(cmd, env, work / f"single-{len(days)}d.log", timeout)
    check = check_one_row_per_day(home, days)
    print(f"  {len(days)} days in one run: {wall:.1f} s, peak RSS {rss / GIB:.2f} GiB ({check})", flush=True)
    shutil.rmtree(home, ignore_errors=True)
    return {"days": len(days), "wall_s": wall, "per_day_s": wall / len(days), "peak_rss_bytes": rss}


# --- 3. the plain Evidently loop (child mode) -------------------------------------------------
def loop_main(argv: list[str]) -> int:
    """In a fresh process: score the days (not timed), then time ``drift.compute`` per day."""
    import warnings

    warnings.filterwarnings("ignore")
    parser = argparse.ArgumentParser(prog="scale.py _loop")
    parser.add_argument("--days", nargs="+", required=True)
    parser.add_argument("--train-month", required=True)
    parser.add_argument("--reference-rows", type=int, default=100_000)
    args = parser.parse_args(argv)

    import pandas as pd

    from mlops_assets import constants as C
    from mlops_assets.monitoring import evidently_metrics as drift
    from mlops_assets.monitoring.scoring import BundleCache
    from mlops_assets.resources import build_resources
    from mlops_assets.settings import Settings
    from mlops_assets.training.model import split_by_time
    from mlops_core.bundle import PREDICTION
    from mlops_core.schema import PICKUP
    from mlops_core.specs import load_specs

    settings = Settings.from_env()
    (spec,) = [
        s
        for s in load_specs(settings.specs_dir, default_drift_threshold=settings.drift_threshold)
        if s.name == SPEC
    ]
    resources = build_resources(settings)
    source, registry = resources[C.TRIP_SOURCE], resources[C.MODEL_REGISTRY]
    # The bench trains one model: the champion is the model in effect on every day.
    version = registry.champion(spec.name)
    bundles = BundleCache(registry, spec)  # as the monitoring assets load a model and its reference
    bundle = bundles.get(version)

    scored = []
    for day in args.days:
        start = pd.Timestamp(day)
        trips, _, _ = source.trips_for(spec, start, start + pd.Timedelta(days=1))
        trips[PREDICTION] = bundle.predict(trips)
        scored.append(trips)

    # The comparison: a seeded sample of the model's holdout (the second part of its
    # training month, scored by the model) of at most --reference-rows rows.
    month = pd.Timestamp(args.train_month + "-01")
    month_rows, _, _ = source.trips_for(spec, month, month + pd.offsets.MonthBegin(1))
    _, holdout = split_by_time(month_rows, spec.training.train_fraction)
    holdout = holdout.sample(n=min(args.reference_rows, len(holdout)), random_state=0)
    holdout = holdout.sort_values(PICKUP, kind="stable").reset_index(drop=True)
    holdout[PREDICTION] = bundle.predict(holdout)
    references = {
        "model": (bundles.reference(version), len(bundle.reference)),
        "sample": (drift.reference_dataset(holdout, bundle.features), len(holdout)),
    }
    out = {"days": len(args.days), "trips": int(sum(len(f) for f in scored))}
    for name, (reference, rows) in references.items():
        drift.compute(scored[0], reference, bundle.features, spec.drift_method)  # warm-up, not timed
        started = time.perf_counter()
        for frame in scored:
            drift.compute(frame, reference, bundle.features, spec.drift_method)
        elapsed = time.perf_counter() - started
        out[name] = {"reference_rows": rows, "per_day_s": elapsed / len(scored), "total_s": elapsed}
    print(json.dumps(out))
    return 0


def segments_main(argv: list[str]) -> int:
    """In a fresh process: score the days (not timed), then time each day's monitoring work as
    ``drift_metrics`` and ``dummy_metrics`` do it, without and with the segment figures
    (issue 24), alternating the two on every day so both see the same machine."""
    import statistics
    import warnings

    warnings.filterwarnings("ignore")
    parser = argparse.ArgumentParser(prog="scale.py _segments")
    parser.add_argument("--days", nargs="+", required=True)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)

    import pandas as pd

    from mlops_assets import constants as C
    from mlops_assets.lib.storage.engine import day_timestamp, utcnow
    from mlops_assets.monitoring import evidently_metrics as drift
    from mlops_assets.monitoring.daily import day_row
    from mlops_assets.monitoring.scoring import BundleCache, score_day
    from mlops_assets.monitoring.segments import segment_rows, segments_html, segments_markdown
    from mlops_assets.monitoring.store import DailyMetricsStore
    from mlops_assets.resources import build_resources
    from mlops_assets.settings import Settings
    from mlops_core.segments import day_segments
    from mlops_core.specs import load_specs

    settings = Settings.from_env()
    (spec,) = [s for s in load_specs(settings.specs_dir) if s.name == SPEC]
    resources = build_resources(settings)
    source, registry, db = resources[C.TRIP_SOURCE], resources[C.MODEL_REGISTRY], resources[C.METRICS_DB]
    version = registry.champion(spec.name)
    bundles = BundleCache(registry, spec)
    bundle, reference = bundles.get(version), bundles.reference(version)
    zones = source.zone_lookup()
    scored = []
    for day in args.days:
        start = pd.Timestamp(day)
        trips, _, _ = source.trips_for(spec, start, start + pd.Timedelta(days=1))
        scored.append((day, score_day(spec, trips, bundle, version)))
    reports = Path(settings.home) / "bench-reports"
    store = DailyMetricsStore(db)

    def one_day(day: str, frame: pd.DataFrame, with_segments: bool) -> float:
        started = time.perf_counter()
        figures, snapshot = drift.compute(frame, reference, bundle.features, spec.drift_method)
        segments, appendix = None, None
        if with_segments:
            rows = segment_rows(
                day_segments(frame, spec.monitoring.segments, zones, bundle.info.holdout_segments), version
            )
            appendix = segments_html(rows, spec.monitoring.segment_min_rows)
            segments_markdown(rows, min_rows=spec.monitoring.segment_min_rows)
            stored = json.loads(json.dumps(rows))  # what rides from drift_metrics to dummy_metrics
            segments = {day_timestamp(day): [{**r, "computed_at": utcnow()} for r in stored]}
        drift.save_html(snapshot, reports / f"{day}.html", day, appendix)
        row = day_row(spec, day, version, figures, None, 0.2, "bench", bundle.info.holdout.rmse)
        store.upsert([row.replace(computed_at=utcnow())], segments=segments)
        return time.perf_counter() - started

    one_day(*scored[0], True)  # warm-up, not timed
    times: dict[bool, list[float]] = {False: [], True: []}
    for repeat in range(args.repeats):
        for i, (day, frame) in enumerate(scored):
            order = (False, True) if (i + repeat) % 2 == 0 else (True, False)
            for with_segments in order:
                times[with_segments].append(one_day(day, frame, with_segments))
    segment_only = []
    for _, frame in scored:
        started = time.perf_counter()
        day_segments(frame, spec.monitoring.segments, zones, bundle.info.holdout_segments)
        segment_only.append(time.perf_counter() - started)
    out = {
        "days": len(scored),
        "repeats": args.repeats,
        "trips_per_day": round(sum(len(f) for _, f in scored) / len(scored)),
        "without_s": statistics.median(times[False]),
        "with_s": statistics.median(times[True]),
        "day_segments_s": statistics.median(segment_only),
    }
    out["ratio"] = out["with_s"] / out["without_s"]
    print(json.dumps(out))
    return 0


def segments_cost(args, work: Path, data: Path, base: Path, days: list[str]) -> dict:
    """Part 5 (issue 24): a day's monitoring cost with and without its segment figures."""
    home = fresh_home(base, work, "segments")
    out = child_json(["_segments", "--days", *days], bench_env(home, data), timeout=args.timeout)
    shutil.rmtree(home, ignore_errors=True)
    print(
        f"segments at {out['trips_per_day']:,} trips/day ({out['days']} days x {out['repeats']}): "
        f"a day's monitoring work {out['without_s']:.3f} s without segments, {out['with_s']:.3f} s "
        f"with them (day_segments alone {out['day_segments_s'] * 1000:.1f} ms): "
        f"ratio {out['ratio']:.3f} (target <= 1.10)",
        flush=True,
    )
    return out


def keys_main() -> int:
    from mlops_assets import constants as C
    from mlops_assets.definitions import defs

    job = defs.resolve_job_def(C.MONITORING_JOB)
    keys = sorted(k.to_user_string() for k in job.asset_layer.executable_asset_keys if k.path[0] == SPEC)
    print(json.dumps({"keys": keys}))
    return 0


# --- 4. a year through the daemon -------------------------------------------------------------
BACKFILL_RUNS = """
query Runs($filter: RunsFilter!) {
  runsOrError(filter: $filter) {
    __typename
    ... on Runs { results { runId status startTime endTime } }
    ... on Error { message }
  }
}"""


def max_concurrency(runs: list[dict]) -> int:
    """The most runs that were running at the same moment (a run ending as another starts
    does not overlap it)."""
    events = sorted(
        [(r["startTime"], 1) for r in runs] + [(r["endTime"], -1) for r in runs], key=lambda e: (e[0], e[1])
    )
    running = peak = 0
    for _, step in events:
        running += step
        peak = max(peak, running)
    return peak


class DagsterDev:
    """``dagster dev`` (webserver + daemon) on the bench home, in its own process group."""

    def __init__(self, home: Path, env: dict, log: Path):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        self.proc = start_dagster_dev(
            bin_dir=BIN,
            workspace=REPO / "workspace.yaml",
            dagster_home=Path(env["DAGSTER_HOME"]),
            port=self.port,
            log_path=log,
            env=env,
        )

    def wait_ready(self, timeout: float) -> None:
        wait_http(f"{self.url}/server_info", timeout, self.proc, self.log)

    def graphql(self, query: str, variables: dict) -> dict:
        import requests

        response = requests.post(
            f"{self.url}/graphql", json={"query": query, "variables": variables}, timeout=60
        )
        response.raise_for_status()
        body = response.json()
        if "errors" in body:
            raise SystemExit(f"GraphQL error: {body['errors']}")
        return body["data"]

    def stop(self) -> None:
        stop_process(self.proc, timeout=20)


def queue_limits() -> str:
    """What `make dev`'s run queue allows (mlops_assets/local_instance.yaml), in words."""
    config = yaml.safe_load(local_instance.TEMPLATE.read_text())["run_coordinator"]["config"]
    limits = {item["key"]: item["limit"] for item in config.get("tag_concurrency_limits", [])}
    backfill = limits.get("dagster/backfill")
    return f"at most {config['max_concurrent_runs']} runs at once" + (
        f", {backfill} of them backfill runs" if backfill else ""
    )


def daemon_backfill(
    base: Path,
    work: Path,
    data_dir: Path,
    keys: list[str],
    days: list[str],
    days_per_run: int | None,
    timeout: float,
) -> dict:
    """The days launched as one partition backfill through ``dagster dev``; its runs' figures."""
    name = f"year-{days_per_run}d-runs" if days_per_run else "year-one-run"
    home = fresh_home(base, work, name)
    env = bench_env(home, data_dir, days_per_run)
    # the instance config `make dev` runs with (its run queue), whatever the copied home had
    (home / "dagster_home" / "dagster.yaml").write_text(local_instance.TEMPLATE.read_text())
    dev = DagsterDev(home, env, work / f"{name}.log")
    try:
        dev.wait_ready(timeout=240)
        params = {
            "assetSelection": [{"path": key.split("/")} for key in keys],
            "partitionNames": days,
            "fromFailure": False,
        }
        launched_at = time.time()
        launched = dev.graphql(LAUNCH_BACKFILL, {"params": params})["launchPartitionBackfill"]
        if launched["__typename"] != "LaunchBackfillSuccess":
            raise SystemExit(f"the backfill was not launched: {launched}")
        backfill_id = launched["backfillId"]

        def final_status():
            status = dev.graphql(BACKFILL_STATUS, {"id": backfill_id})["partitionBackfillOrError"]
            return status.get("status") if status.get("status") in FINISHED else None

        status = wait_for(final_status, timeout, 5.0, f"backfill {backfill_id} ({name})")
        finished_at = time.time()
        runs = dev.graphql(
            BACKFILL_RUNS, {"filter": {"tags": [{"key": "dagster/backfill", "value": backfill_id}]}}
        )["runsOrError"]["results"]
    finally:
        dev.stop()
    failed = [r for r in runs if r["status"] != "SUCCESS"]
    if status != "COMPLETED_SUCCESS" or failed or not runs:
        raise SystemExit(
            f"{name}: backfill {status}, runs {[(r['runId'], r['status']) for r in runs]} (log: {dev.log})"
        )
    check = check_one_row_per_day(home, days)
    result = {
        "days_per_run": days_per_run,
        "runs": len(runs),
        "expected_runs": math.ceil(len(days) / days_per_run) if days_per_run else 1,
        "max_concurrency": max_concurrency(runs),
        "end_to_end_s": finished_at - launched_at,
        "runs_span_s": max(r["endTime"] for r in runs) - min(r["startTime"] for r in runs),
        "run_time_sum_s": sum(r["endTime"] - r["startTime"] for r in runs),
        "rows_check": check,
    }
    print(
        f"  {name}: {result['runs']} run(s), at most {result['max_concurrency']} at once, "
        f"{result['end_to_end_s']:.0f} s end to end, runs' span {result['runs_span_s']:.0f} s ({check})",
        flush=True,
    )
    if result["runs"] != result["expected_runs"]:
        print(
            f"  note: expected {result['expected_runs']} runs of at most {days_per_run} days; "
            f"the code location does not split by {DAYS_PER_RUN_VAR} (yet?)",
            flush=True,
        )
    shutil.rmtree(home, ignore_errors=True)
    return result


# --- the whole bench --------------------------------------------------------------------------
def train_home(work: Path, data_dir: Path, train_month: str, timeout: float) -> Path:
    base = work / f"trained-{data_dir.name}"
    started = time.perf_counter()
    train(base, data_dir, train_month, timeout=timeout)
    print(f"  trained on {train_month} in {time.perf_counter() - started:.0f} s (not timed)", flush=True)
    return base


def print_table(rows: list[tuple[str, ...]]) -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for i, row in enumerate(rows):
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)))
        if i == 0:
            print("  ".join("-" * w for w in widths))


def report(out: dict) -> None:
    if out.get("single"):
        report_single(out["single"], out["train_month"])
    if out.get("year"):
        report_year(out["year"])


def report_single(single: dict, train_month: str) -> None:
    short, long, loop = single["short"], single["long"], single["loop"]
    print(f"\n=== single runs at {single['trips_per_day']:,} trips a day (model trained on {train_month})")
    print_table(
        [
            ("range in one run", "wall time", "per day", "peak RSS"),
            *(
                (
                    f"{r['days']} days",
                    f"{r['wall_s']:.1f} s",
                    f"{r['per_day_s']:.2f} s",
                    f"{r['peak_rss_bytes'] / GIB:.2f} GiB",
                )
                for r in (short, long)
            ),
        ]
    )
    print(
        f"\nmarginal cost of a day: {single['marginal_s']:.2f} s "
        f"(= (t{long['days']} - t{short['days']}) / {long['days'] - short['days']})"
    )
    print(
        f"plain Evidently loop over {loop['days']} pre-scored days ({loop['trips']:,} trips): "
        f"{loop['model']['per_day_s']:.2f} s a day against the model's reference "
        f"({loop['model']['reference_rows']:,} rows), {loop['sample']['per_day_s']:.2f} s against a "
        f"{loop['sample']['reference_rows']:,}-row sample of its holdout\n"
    )
    print_table(
        [
            ("ratio", "measured", "target"),
            (
                "asset marginal per-day cost / loop (the same reference as the asset)",
                f"{single['cost_ratio_model']:.2f}",
                "<= 1.5",
            ),
            (
                f"asset marginal per-day cost / loop ({loop['sample']['reference_rows']:,}-row sample, "
                "the issue's baseline)",
                f"{single['cost_ratio_sample']:.2f}",
                "<= 1.5",
            ),
            (
                f"asset per-day cost of the {long['days']}-day run / loop (holdout sample)",
                f"{long['per_day_s'] / loop['sample']['per_day_s']:.2f}",
                "-",
            ),
            (
                f"peak RSS {long['days']} days / {short['days']} days",
                f"{single['memory_ratio']:.2f}",
                "<= 1.3",
            ),
        ]
    )


def report_year(year: dict) -> None:
    print(
        f"\n=== {year['days']} days at {year['trips_per_day']:,} trips a day as a partition backfill "
        f"through the daemon (make dev's run queue: {year['queue']})"
    )
    rows = [
        ("backfill", "runs", "max at once", "end to end", "runs' span", "sum of run times", "dummy_metrics")
    ]
    for r in (year["split"], year["one_run"]):
        rows.append(
            (
                f"runs of {r['days_per_run']} days" if r["days_per_run"] else "one run",
                str(r["runs"]),
                str(r["max_concurrency"]),
                f"{r['end_to_end_s']:.0f} s",
                f"{r['runs_span_s']:.0f} s",
                f"{r['run_time_sum_s']:.0f} s",
                r["rows_check"],
            )
        )
    print_table(rows)
    split, one = year["split"], year["one_run"]
    print(
        f"split / one run: end to end {split['end_to_end_s'] / one['end_to_end_s']:.2f}, "
        f"runs' span {split['runs_span_s'] / one['runs_span_s']:.2f}"
    )


def single_runs(args, work: Path, keys: list[str]) -> dict:
    """Parts 1-3: the short and the long range in one run each, and the plain loop."""
    short_days = days_from(args.first_day, args.short_days)
    long_days = days_from(args.first_day, args.long_days)
    print(f"data at {args.trips_per_day:,} trips a day ...", flush=True)
    months = [args.train_month, *months_of(long_days)]
    data = generate(work / f"data-{args.trips_per_day}", months, args.trips_per_day)
    base = train_home(work, data, args.train_month, args.timeout)
    short = single_run(base, work, data, keys, short_days, args.timeout)
    long = single_run(base, work, data, keys, long_days, args.timeout)
    loop_args = [
        "--days",
        *short_days,
        "--train-month",
        args.train_month,
        "--reference-rows",
        str(args.reference_rows),
    ]
    loop_home = fresh_home(base, work, "loop")
    loop = child_json(["_loop", *loop_args], bench_env(loop_home, data), timeout=args.timeout)
    shutil.rmtree(loop_home, ignore_errors=True)
    segments = segments_cost(args, work, data, base, short_days)
    marginal = (long["wall_s"] - short["wall_s"]) / (long["days"] - short["days"])
    return {
        "trips_per_day": args.trips_per_day,
        "short": short,
        "long": long,
        "loop": loop,
        "marginal_s": marginal,
        "cost_ratio_sample": marginal / loop["sample"]["per_day_s"],
        "cost_ratio_model": marginal / loop["model"]["per_day_s"],
        "memory_ratio": long["peak_rss_bytes"] / short["peak_rss_bytes"],
        "segments": segments,
    }


def year_backfills(args, work: Path, keys: list[str]) -> dict:
    """Part 4: the year through the daemon, split into runs and as one run."""
    days = days_from(args.first_day, args.year_days)
    print(f"a year: data at {args.year_trips_per_day:,} trips a day ...", flush=True)
    months = [args.train_month, *months_of(days)]
    data = generate(work / f"data-{args.year_trips_per_day}", months, args.year_trips_per_day)
    base = train_home(work, data, args.train_month, args.timeout)
    common = (base, work, data, keys, days)
    return {
        "days": len(days),
        "trips_per_day": args.year_trips_per_day,
        "queue": queue_limits(),
        "split": daemon_backfill(*common, args.days_per_run, args.timeout),
        "one_run": daemon_backfill(*common, None, args.timeout),
    }


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "_loop":
        return loop_main(sys.argv[2:])
    if len(sys.argv) > 1 and sys.argv[1] == "_keys":
        return keys_main()
    if len(sys.argv) > 1 and sys.argv[1] == "_segments":
        return segments_main(sys.argv[2:])
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trips-per-day", type=int, default=100_000, help="volume of the single runs")
    parser.add_argument("--train-month", default="2022-01")
    parser.add_argument("--first-day", default=FIRST_DAY, help="first day of every range")
    parser.add_argument("--short-days", type=int, default=7)
    parser.add_argument("--long-days", type=int, default=89)
    parser.add_argument("--reference-rows", type=int, default=100_000, help="the loop's holdout sample")
    parser.add_argument("--year-trips-per-day", type=int, default=20_000)
    parser.add_argument("--year-days", type=int, default=365)
    parser.add_argument("--days-per-run", type=int, default=30, help=f"passed as {DAYS_PER_RUN_VAR}")
    parser.add_argument("--skip-year", action="store_true", help="only the single runs and the loop")
    parser.add_argument("--skip-single", action="store_true", help="only the year through the daemon")
    parser.add_argument("--timeout", type=float, default=3 * 3600, help="seconds, for each run or backfill")
    parser.add_argument("--work-dir", help="keep data and logs here (reused); default: a temporary folder")
    parser.add_argument("--json", help="also write the results here")
    parser.add_argument(
        "--segments-only",
        action="store_true",
        help="only part 5: a day's monitoring cost with and without segments (--short-days days)",
    )
    args = parser.parse_args()
    if args.long_days <= args.short_days:
        parser.error("--long-days must be more than --short-days")

    work = Path(args.work_dir).resolve() if args.work_dir else Path(tempfile.mkdtemp(prefix="bench-scale-"))
    work.mkdir(parents=True, exist_ok=True)
    print(f"bench folder: {work}", flush=True)
    finished = False
    try:
        out: dict = {"train_month": args.train_month}
        if args.segments_only:
            days = days_from(args.first_day, args.short_days)
            print(f"data at {args.trips_per_day:,} trips a day ...", flush=True)
            data = generate(
                work / f"data-{args.trips_per_day}", [args.train_month, *months_of(days)], args.trips_per_day
            )
            base = train_home(work, data, args.train_month, args.timeout)
            out["segments"] = segments_cost(args, work, data, base, days)
            if args.json:
                Path(args.json).write_text(json.dumps(out, indent=2))
            finished = True
            return 0
        keys = monitoring_keys(bench_env(work / "keys", work))
        print(f"the monitoring job's assets: {', '.join(keys)}", flush=True)
        if not args.skip_single:
            out["single"] = single_runs(args, work, keys)
        if not args.skip_year:
            out["year"] = year_backfills(args, work, keys)
        report(out)
        if args.json:
            Path(args.json).write_text(json.dumps(out, indent=2))
        finished = True
    finally:
        if not args.work_dir and finished:
            shutil.rmtree(work, ignore_errors=True)
        elif not finished:
            print(f"kept {work} (the processes' logs are there); remove it when done", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
