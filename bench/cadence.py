"""Benchmark: the alert → retrain → promotion loop at the cadence production runs it (issue 27).

Production monitors one day at a time: the daily schedule's run of
``metrics_backfill_to_postgres`` for that day, then the alert sensor
(``drift_alert_sensor__<spec>``, every 30 s under the daemon), then the runs it requests
(``retrain_duration_model`` for a breach day). ``make demo`` instead monitors a month in one
run and evaluates the sensor once per month. This bench runs a period both ways, side by
side, each loop in its own process with a fresh MLOPS_HOME, a persistent Dagster instance in
its own DAGSTER_HOME and its own stores (SQLite metrics DB, MLflow, outbox):

* **daily loop**: the spec's first model trained on the training month through the code
  location's own jobs (the month's ``trips`` through ``metrics_backfill_to_postgres``, then
  ``duration_model`` through ``train_duration_model``); then for each day d: one run of
  ``metrics_backfill_to_postgres`` for partition d (trips, predictions, drift_metrics,
  dummy_metrics), one evaluation of the real alert sensor (``evaluate_tick`` with the kept
  cursor, as the daemon calls it), and each RunRequest executed as a run of its job with its
  partition and tags (the request's, plus ``dagster/sensor_name`` and ``dagster/run_key``);
  a request whose run key already has a run of this sensor is skipped, as the daemon skips it;
* **monthly loop**: the same training, then per calendar month of the period one range run
  of the monitoring assets (the range tags, as ``make demo`` does), one sensor evaluation and
  its requested runs.

A failed run (``raise_on_error=False``) is counted and its root error reported, never fatal.
Per case and loop it prints: breach days and breach episodes (consecutive breach days of one
rule), emails (``.eml`` files in the outbox and distinct message ids in ``alerts``), retrain
runs, failed runs and why, every retrain's decision with its margin (candidate vs champion
holdout RMSE on the same rows, from the retrain's materialization metadata) and training
window, the model timeline with what each model served, and the trip-weighted mean daily RMSE
(``sum(rmse * n_rows) / sum(n_rows)`` over ``dummy_metrics``) of the models in effect from 10
days after the daily loop's first breach to the end of the period (the same days for both
loops), and over the whole period. Then one comparison line per case.

Cases: ``synthetic`` (the generator with its scenario calendar, 2021-02-01 .. 2021-04-30) and
``shared`` (the real TLC files of ``--data-dir``, default ``$TRIP_DATA_DIR`` or
../shared/data/nyc-tlc, 2022-01-01 .. 2022-03-31), both trained on 2021-01.

    .venv/bin/python bench/cadence.py [--case all|synthetic|shared] [--json out.json] [--keep]
    .venv/bin/python bench/cadence.py --case shared --data-dir DIR --start 2023-01-01 \\
        --end 2023-03-31 --train-month 2022-12          # any other period of real files
    .venv/bin/python bench/cadence.py --specs-dir DIR   # the same with other spec settings

The bench reads the code location only through its entry points (``build_defs``,
``Settings``, ``build_resources``, the specs) and its user-facing names (jobs, sensor, asset
keys ``[spec, name]``, the metrics DB's tables read with plain SQLAlchemy), so it measures the
loop whatever the code behind them looks like.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, replace
from datetime import date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

SPEC = "green_taxi_duration"
# The code location's user-facing names: jobs, sensor, asset names (keys are [spec, name]).
TRAIN_JOB = "train_duration_model"
MONITORING_JOB = "metrics_backfill_to_postgres"
MONITORING = ("trips", "predictions", "drift_metrics", "dummy_metrics")
TRIPS, MODEL, RETRAINED = "trips", "duration_model", "retrained_model"
REVIEW = "champion_review"  # the daily shadow review of a new champion (and its rollback)
# Dagster's tags: a sensor's run (dagster/_core/storage/tags.py) and a range run.
SENSOR_NAME_TAG, RUN_KEY_TAG = "dagster/sensor_name", "dagster/run_key"
RANGE_START_TAG, RANGE_END_TAG = "dagster/asset_partition_range_start", "dagster/asset_partition_range_end"
BENCH_TAG = "mlops/bench"
# The RMSE comparison starts this many days after the daily loop's first breach (issue 27).
SETTLE_DAYS = 10
LOOPS = ("daily", "monthly")


def sensor_name(spec: str) -> str:
    return f"drift_alert_sensor__{spec}"


@dataclass(frozen=True)
class Case:
    name: str
    start: str  # first monitored day
    end: str  # last monitored day
    train_month: str  # YYYY-MM: the spec's first model
    trip_source: str  # "synthetic" or "local"
    data_dir: str | None = None
    scenarios: bool = True  # the synthetic generator's scenario calendar
    spec: str = SPEC
    specs_dir: str | None = None  # None: the packaged specs


CASES = {
    "synthetic": Case("synthetic", "2021-02-01", "2021-04-30", "2021-01", "synthetic"),
    "shared": Case("shared", "2022-01-01", "2022-03-31", "2021-01", "local"),
}


# --- pure helpers (no Dagster, no IO): what the tests exercise -------------------------------
def day_of(value) -> str:
    """``YYYY-MM-DD`` of a date, a datetime, or the text a database returns for either."""
    return value.isoformat()[:10] if isinstance(value, date) else str(value)[:10]


def add_days(day: str, n: int) -> str:
    return (date.fromisoformat(day) + timedelta(days=n)).isoformat()


def days_between(first: str, last: str) -> list[str]:
    n = (date.fromisoformat(last) - date.fromisoformat(first)).days
    return [add_days(first, i) for i in range(n + 1)]


def month_spans(first: str, last: str) -> list[tuple[str, str]]:
    """The calendar months of ``first .. last``, each clipped to the period."""
    spans, day = [], date.fromisoformat(first)
    end = date.fromisoformat(last)
    while day <= end:
        next_month = (day.replace(day=1) + timedelta(days=32)).replace(day=1)
        spans.append((day.isoformat(), min(end, next_month - timedelta(days=1)).isoformat()))
        day = next_month
    return spans


def episodes(alerts: Iterable[dict]) -> list[dict]:
    """Breach episodes: runs of consecutive calendar days breaching the same rule, in order of
    their first day (``rule``, ``first``, ``last``, ``days``)."""
    by_rule: dict[str, set[str]] = {}
    for alert in alerts:
        by_rule.setdefault(alert["rule"], set()).add(day_of(alert["timestamp"]))
    out = []
    for rule, days in by_rule.items():
        current: list[str] = []
        for day in sorted(days):
            if current and add_days(current[-1], 1) != day:
                out.append({"rule": rule, "first": current[0], "last": current[-1], "days": len(current)})
                current = []
            current.append(day)
        if current:
            out.append({"rule": rule, "first": current[0], "last": current[-1], "days": len(current)})
    return sorted(out, key=lambda e: (e["first"], e["rule"]))


def first_breach(alerts: Iterable[dict]) -> str | None:
    days = [day_of(a["timestamp"]) for a in alerts]
    return min(days) if days else None


def weighted_rmse(metrics: Iterable[dict], first: str | None = None, last: str | None = None) -> dict:
    """The trip-weighted mean daily RMSE, ``sum(rmse * n_rows) / sum(n_rows)``, over the rows of
    ``first .. last`` (inclusive; None: unbounded) that have an RMSE and trips."""
    rows = [
        r
        for r in metrics
        if r.get("rmse") is not None
        and (r.get("n_rows") or 0) > 0
        and (first is None or day_of(r["timestamp"]) >= first)
        and (last is None or day_of(r["timestamp"]) <= last)
    ]
    trips = sum(r["n_rows"] for r in rows)
    return {
        "first": first,
        "last": last,
        "days": len(rows),
        "trips": trips,
        "rmse": sum(r["rmse"] * r["n_rows"] for r in rows) / trips if trips else None,
    }


def margin(candidate: float | None, champion: float | None) -> float | None:
    """Candidate minus champion holdout RMSE (negative: the candidate is better)."""
    if candidate is None or champion is None:
        return None
    return candidate - champion


def served(metrics: Sequence[dict]) -> list[dict]:
    """What each model version served: its days, trips, weighted RMSE, drift and RMSE ratio."""
    out: dict[str, dict] = {}
    for row in sorted(metrics, key=lambda r: day_of(r["timestamp"])):
        version = str(row.get("model_version"))
        entry = out.setdefault(version, {"version": version, "rows": []})
        entry["rows"].append(row)
    summaries = []
    for version, entry in out.items():
        rows = entry["rows"]
        drift = [r["prediction_drift"] for r in rows if r.get("prediction_drift") is not None]
        ratio = [r["rmse_ratio"] for r in rows if r.get("rmse_ratio") is not None]
        summaries.append(
            {
                "version": version,
                "first": day_of(rows[0]["timestamp"]),
                "last": day_of(rows[-1]["timestamp"]),
                "days": len(rows),
                "trips": sum(r.get("n_rows") or 0 for r in rows),
                "rmse": weighted_rmse(rows)["rmse"],
                "drift_median": statistics.median(drift) if drift else None,
                "drift_max": max(drift) if drift else None,
                "rmse_ratio_median": statistics.median(ratio) if ratio else None,
                "rmse_ratio_max": max(ratio) if ratio else None,
            }
        )
    return summaries


def retrains(steps: Sequence[dict]) -> list[dict]:
    """Every retrain request of a loop, in order: the day the sensor asked (the monitored day or
    month), the request and what its run did."""
    out = []
    for step in steps:
        for request in step.get("requests", []):
            out.append({"asked_after": step["label"], **request})
    return out


def summarize(result: dict, window_first: str | None) -> dict:
    """Every figure of one loop, from its raw result (``run_loop``) and the comparison's first
    day (None: no breach in the daily loop, the whole period only)."""
    metrics, alerts = result["metrics"], result["alerts"]
    requested = retrains(result["steps"])
    runs = [r["run"] for r in requested if r.get("run")]
    monitoring_runs = [s["monitor"] for s in result["steps"] if s.get("monitor")]
    failed = [
        r for r in [result["train"].get("trips"), result["train"].get("model"), *monitoring_runs, *runs] if r
    ]
    failed = [r for r in failed if not r["success"]]
    decisions = []
    for request in requested:
        run = request.get("run")
        md = (run or {}).get("metadata") or {}
        decisions.append(
            {
                "asked_after": request["asked_after"],
                "partition": request["partition"],
                "rule": request["tags"].get("mlops/trigger_rule"),
                "value": request["tags"].get("mlops/trigger_value"),
                "run_key": request["run_key"],
                "skipped": request.get("skipped"),
                "success": None if run is None else run["success"],
                "error": None if run is None else run.get("error"),
                "version": md.get("model_version"),
                "decision": md.get("decision"),
                "reason": md.get("decision_reason"),
                "candidate_rmse": md.get("candidate_holdout_rmse"),
                "champion_version": md.get("champion_version"),
                "champion_rmse": md.get("champion_holdout_rmse"),
                "margin": margin(md.get("candidate_holdout_rmse"), md.get("champion_holdout_rmse")),
                "effective_from": md.get("effective_from"),
                "training_window": md.get("training_window"),
                "n_train": md.get("n_train"),
                "n_holdout": md.get("n_holdout"),
                "missing_days": md.get("missing_days"),
            }
        )
    eps = episodes(alerts)
    last = result["end"]
    return {
        "breach_days": {
            rule: sum(e["days"] for e in eps if e["rule"] == rule) for rule in {e["rule"] for e in eps}
        },
        "episodes": eps,
        "first_breach": first_breach(alerts),
        "emails": result["emails"],
        "email_messages": len({a["message_id"] for a in alerts if a.get("message_id")}),
        "monitoring_runs": len(monitoring_runs),
        "sensor_evaluations": len(result["steps"]),
        "retrain_requests": len(requested),
        "retrain_runs": len(runs),
        "skipped_requests": sum(1 for r in requested if r.get("skipped")),
        "failed_runs": len(failed),
        "failures": [
            {"job": r["job"], "partition": r.get("partition"), "error": r.get("error")} for r in failed
        ],
        "decisions": decisions,
        "promotions": [d for d in decisions if d["decision"] == "promoted"],
        "timeline": result["timeline"],
        "served": served(metrics),
        "rmse_window": weighted_rmse(metrics, window_first, last) if window_first else None,
        "rmse_period": weighted_rmse(metrics, result["start"], last),
        "wall_s": result["wall_s"],
        "home": result["home"],
    }


def comparison(daily: dict, monthly: dict) -> dict | None:
    """Daily vs monthly weighted RMSE over the same days (the window, else the whole period)."""
    key = "rmse_window" if daily["rmse_window"] else "rmse_period"
    d, m = daily[key], (monthly.get(key) or {})
    if d.get("rmse") is None or m.get("rmse") is None:
        return None
    return {
        "over": key,
        "first": d["first"],
        "last": d["last"],
        "days": d["days"],
        "daily_rmse": d["rmse"],
        "monthly_rmse": m["rmse"],
        "ratio": d["rmse"] / m["rmse"],
    }


def segments(daily: Sequence[dict], monthly: Sequence[dict]) -> list[dict]:
    """The days both loops monitored, cut where the pair of models in effect changes: each
    segment's days and both loops' trip-weighted RMSE on them (the same trips, two models)."""
    by_day = {day_of(r["timestamp"]): r for r in monthly}
    out: list[dict] = []
    for row in sorted(daily, key=lambda r: day_of(r["timestamp"])):
        day = day_of(row["timestamp"])
        other = by_day.get(day)
        if other is None:
            continue
        pair = (str(row.get("model_version")), str(other.get("model_version")))
        if out and out[-1]["pair"] == pair and add_days(out[-1]["last"], 1) == day:
            out[-1]["last"] = day
            out[-1]["daily_rows"].append(row)
            out[-1]["monthly_rows"].append(other)
        else:
            out.append(
                {"pair": pair, "first": day, "last": day, "daily_rows": [row], "monthly_rows": [other]}
            )
    return [
        {
            "first": seg["first"],
            "last": seg["last"],
            "days": len(seg["daily_rows"]),
            "daily_version": seg["pair"][0],
            "monthly_version": seg["pair"][1],
            "daily_rmse": weighted_rmse(seg["daily_rows"])["rmse"],
            "monthly_rmse": weighted_rmse(seg["monthly_rows"])["rmse"],
        }
        for seg in out
    ]


# --- one loop, in its own process -----------------------------------------------------------
def jsonable(value):
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, bool | int | float | str) or value is None:
        return value
    return str(value)


def error_line(cls_name: str | None, message: str | None) -> str:
    """``Class: first line`` of an error (Dagster's message starts with the class's dotted
    path: ``pkg.mod.Class: text``; the path is dropped)."""
    text = ((message or "").strip().splitlines() or [""])[0]
    head, sep, rest = text.partition(": ")
    if sep and cls_name and head.rpartition(".")[2] == cls_name:
        text = rest
    return f"{cls_name}: {text}" if cls_name else text


def root_error(result) -> str:
    """The failed steps' root errors, ``Class: first line`` each (no traceback)."""
    lines = []
    for event in result.all_events:
        if event.is_step_failure:
            error = event.step_failure_data.error
            while error is not None and error.cause is not None:
                error = error.cause
            if error is None:
                lines.append(str(event.message).strip().splitlines()[0])
            else:
                lines.append(error_line(error.cls_name, error.message))
    return "; ".join(lines) or f"run {result.run_id} failed (no step failure event)"


class Driver:
    """Runs the code location's jobs and sensor for one spec on one persistent instance."""

    def __init__(self, spec, defs, instance):
        import dagster as dg

        self.dg = dg
        self.spec = spec
        self.defs = defs
        self.instance = instance
        self.sensor = defs.resolve_sensor_def(sensor_name(spec.name))
        self.cursor: str | None = None

    def key(self, name: str):
        return self.dg.AssetKey([self.spec.name, name])

    def run(self, job: str, selection, *, partition=None, first=None, last=None, tags=None) -> dict:
        """One run of ``job`` on ``selection`` (asset keys) for a partition or a range."""
        run_tags = {BENCH_TAG: "cadence", **(tags or {})}
        if first is not None:
            run_tags.update({RANGE_START_TAG: first, RANGE_END_TAG: last})
        out = {"job": job, "partition": partition or (f"{first}..{last}" if first else None)}
        started = time.perf_counter()
        try:
            result = self.defs.resolve_job_def(job).execute_in_process(
                instance=self.instance,
                asset_selection=list(selection),
                partition_key=partition,
                tags=run_tags,
                raise_on_error=False,
            )
        except Exception as exc:  # the run could not start (a bad request): counted, not fatal
            first_line = (str(exc).strip().splitlines() or [""])[0]
            return {**out, "success": False, "error": f"{type(exc).__name__}: {first_line}", "run_id": None}
        out.update(run_id=result.run_id, success=result.success, seconds=time.perf_counter() - started)
        if not result.success:
            out["error"] = root_error(result)
        for event in result.get_asset_materialization_events():
            if event.asset_key in (self.key(MODEL), self.key(RETRAINED)):
                mat = event.event_specific_data.materialization
                out["metadata"] = {k: jsonable(v.value) for k, v in mat.metadata.items()}
        return out

    def train(self, month: str) -> dict:
        first = f"{month}-01"
        next_month = (date.fromisoformat(first) + timedelta(days=32)).replace(day=1)
        last = (next_month - timedelta(days=1)).isoformat()
        trips = self.run(
            MONITORING_JOB, [self.key(TRIPS)], first=first, last=last, tags={"mlops/stage": "training-data"}
        )
        model = None
        if trips["success"]:
            model = self.run(TRAIN_JOB, [self.key(MODEL)], partition=first, tags={"mlops/stage": "training"})
        return {"trips": trips, "model": model}

    def monitoring_keys(self) -> list:
        """The daily job's chain for this spec: the monitoring assets, and the champion review
        where the code location has one (it runs in the same job, as the daily schedule's run)."""
        keys = [self.key(n) for n in MONITORING]
        try:
            self.defs.resolve_assets_def(self.key(REVIEW))
        except Exception:  # an older code location without the shadow review
            return keys
        return [*keys, self.key(REVIEW)]

    def monitor(self, first: str, last: str) -> dict:
        keys = self.monitoring_keys()
        if first == last:
            return self.run(MONITORING_JOB, keys, partition=first, tags={"mlops/stage": "monitoring"})
        return self.run(MONITORING_JOB, keys, first=first, last=last, tags={"mlops/stage": "monitoring"})

    def already_launched(self, run_key: str) -> bool:
        """The daemon's idempotence check: a run of this sensor with this run key exists."""
        runs = self.instance.get_runs(filters=self.dg.RunsFilter(tags={RUN_KEY_TAG: run_key}))
        return any(r.tags.get(SENSOR_NAME_TAG) == self.sensor.name for r in runs)

    def tick(self) -> dict:
        """One evaluation of the alert sensor, as the daemon makes it, then its requested runs."""
        dg = self.dg
        try:
            with dg.build_sensor_context(
                instance=self.instance,
                cursor=self.cursor,
                resources=self.defs.resources,
                repository_def=self.defs.get_repository_def(),
            ) as context:
                data = self.sensor.evaluate_tick(context)
        except Exception as exc:  # a failed tick: the daemon logs it and keeps its cursor
            first_line = (str(exc).strip().splitlines() or [""])[0]
            return {"tick_error": f"{type(exc).__name__}: {first_line}", "requests": []}
        self.cursor = data.cursor
        requests = []
        for request in data.run_requests or []:
            tags = {**request.tags, SENSOR_NAME_TAG: self.sensor.name}
            if request.run_key:
                tags[RUN_KEY_TAG] = request.run_key
            entry = {
                "run_key": request.run_key,
                "partition": request.partition_key,
                "tags": {k: v for k, v in tags.items() if k.startswith("mlops/")},
                "skipped": bool(request.run_key) and self.already_launched(request.run_key),
            }
            if not entry["skipped"]:
                job = request.job_name or self.sensor.job_name
                selection = request.asset_selection or [self.key(RETRAINED)]
                entry["run"] = self.run(job, selection, partition=request.partition_key, tags=tags)
            requests.append(entry)
        return {"skip": data.skip_message, "requests": requests}


def read_rows(url: str, table: str, model: str, order: str) -> list[dict]:
    """Every row of ``table`` for ``model`` with plain SQLAlchemy (no project code)."""
    import sqlalchemy as sa

    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                sa.text(f"select * from {table} where model_name = :m order by {order}"), {"m": model}
            ).mappings()
            return [{k: jsonable(v) for k, v in row.items()} for row in rows]
    except sa.exc.SQLAlchemyError:  # the table was never created (the loop stopped before it)
        return []
    finally:
        engine.dispose()


def describe_step(label: str, step: dict, metrics: dict[str, dict]) -> str:
    """One progress line: the monitored day's figures, the sensor's answer, the runs."""
    row = metrics.get(label, {})

    def num(name, digits):
        value = row.get(name)
        return "n/a" if value is None else f"{value:.{digits}f}"

    parts = [label]
    if row:
        parts.append(
            f"trips {row.get('n_rows')} drift {num('prediction_drift', 3)} rmse {num('rmse', 2)} "
            f"ratio {num('rmse_ratio', 2)} v{row.get('model_version')}"
        )
    if step.get("monitor") and not step["monitor"]["success"]:
        parts.append(f"MONITORING FAILED: {step['monitor'].get('error')}")
    if step.get("tick_error"):
        parts.append(f"SENSOR FAILED: {step['tick_error']}")
    for request in step.get("requests", []):
        run = request.get("run")
        if request.get("skipped"):
            what = "skipped (run key already used)"
        elif not run["success"]:
            what = f"FAILED {run.get('error')}"
        else:
            md = run.get("metadata") or {}
            what = f"v{md.get('model_version')} {md.get('decision')}"
            diff = margin(md.get("candidate_holdout_rmse"), md.get("champion_holdout_rmse"))
            if diff is not None:
                what += f" ({md['candidate_holdout_rmse']:.3f} vs {md['champion_holdout_rmse']:.3f})"
        parts.append(f"retrain {request['partition']}: {what}")
    if not step.get("requests") and step.get("skip"):
        parts.append(f"sensor: {step['skip']}")
    return " | ".join(parts)


def run_loop(case: Case, loop: str, home: Path) -> dict:
    """Train, then monitor ``case``'s period day by day (``daily``) or month by month
    (``monthly``) with the sensor and its runs after each; return every raw figure."""
    import dagster as dg

    from mlops_assets.definitions import build_defs
    from mlops_assets.resources import build_resources
    from mlops_assets.settings import Settings

    dagster_home = home / "dagster_home"
    dagster_home.mkdir(parents=True, exist_ok=True)
    (dagster_home / "dagster.yaml").write_text("telemetry:\n  enabled: false\nnux:\n  enabled: false\n")
    values = {
        "trip_source": case.trip_source,
        "trip_data_dir": Path(case.data_dir) if case.data_dir else None,
        "synthetic_scenarios": case.scenarios,
    }
    if case.specs_dir:
        values["specs_dir"] = Path(case.specs_dir)
    settings = Settings.for_home(home, **values)
    specs = {s.name: s for s in settings.load_specs()}
    if case.spec not in specs:
        raise SystemExit(f"no model spec {case.spec!r} in {settings.specs_dir} (have: {', '.join(specs)})")
    spec = specs[case.spec]
    defs = build_defs([spec], build_resources(settings))
    instance = dg.DagsterInstance.from_config(str(dagster_home))
    driver = Driver(spec, defs, instance)
    started = time.perf_counter()
    train = driver.train(case.train_month)
    steps: list[dict] = []
    trained = train["model"] is not None and train["model"]["success"]
    if not trained:
        failed = train["model"] or train["trips"]
        print(f"training on {case.train_month} failed: {failed.get('error')}", flush=True)
    else:
        md = train["model"].get("metadata") or {}
        print(
            f"v{md.get('model_version')} trained on {case.train_month}: holdout RMSE "
            f"{md.get('holdout_rmse')}, {md.get('decision')}",
            flush=True,
        )
        spans = (
            [(d, d) for d in days_between(case.start, case.end)]
            if loop == "daily"
            else month_spans(case.start, case.end)
        )
        url = settings.metrics_database_url
        for first, last in spans:
            step = {
                "label": first if first == last else f"{first}..{last}",
                "monitor": driver.monitor(first, last),
            }
            step.update(driver.tick())
            steps.append(step)
            day_rows = {
                day_of(r["timestamp"]): r for r in read_rows(url, "dummy_metrics", spec.name, "timestamp")
            }
            print(describe_step(step["label"], step, day_rows), flush=True)
    wall = time.perf_counter() - started
    url = settings.metrics_database_url
    outbox = home / "outbox"
    return {
        "case": asdict(case),
        "loop": loop,
        "home": str(home),
        "start": case.start,
        "end": case.end,
        "wall_s": wall,
        "train": train,
        "steps": steps,
        "metrics": read_rows(url, "dummy_metrics", spec.name, "timestamp"),
        "alerts": read_rows(url, "alerts", spec.name, "timestamp, rule"),
        "timeline": read_rows(url, "model_timeline", spec.name, "effective_from"),
        "emails": len(list(outbox.rglob("*.eml"))) if outbox.is_dir() else 0,
    }


def loop_main(argv: list[str]) -> int:
    """Child mode: ``cadence.py _loop CONFIG.json OUT.json``."""
    import logging
    import warnings

    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore")
    sys.path.insert(0, str(REPO))
    config, out = json.loads(Path(argv[0]).read_text()), Path(argv[1])
    result = run_loop(Case(**config["case"]), config["loop"], Path(config["home"]))
    out.write_text(json.dumps(result, indent=1))
    return 0


# --- the bench: both loops of each case, side by side ----------------------------------------
# Variables the code location reads (settings.py): a child gets only the bench's own values.
PROJECT_VARS = (
    "MLOPS_HOME", "DAGSTER_HOME", "TRIP_SOURCE", "TRIP_DATA_DIR", "SYNTHETIC_SCENARIOS",
    "SYNTHETIC_TRIPS_PER_DAY", "DRIFT_THRESHOLD", "MONITORING_BACKFILL_DAYS_PER_RUN",
    "MODEL_SPECS_DIR", "METRICS_DATABASE_URL", "MLFLOW_TRACKING_URI", "SMTP_HOST", "SMTP_PORT",
    "SMTP_USER", "SMTP_PASSWORD", "SMTP_STARTTLS", "ALERT_EMAIL_FROM", "ALERT_EMAIL_TO",
    "SERVING_URL", "SERVING_RELOAD_TOKEN", "REPORTS_URL", "MLFLOW_UI_URL", "GRAFANA_URL",
)  # fmt: skip


def child_env(case: Case, home: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in PROJECT_VARS}
    env.update(
        MLOPS_HOME=str(home),
        DAGSTER_HOME=str(home / "dagster_home"),
        TRIP_SOURCE=case.trip_source,
        SYNTHETIC_SCENARIOS="on" if case.scenarios else "off",
        MLFLOW_LOGGING_LEVEL="WARNING",
        PYTHONUNBUFFERED="1",
    )
    if case.data_dir:
        env["TRIP_DATA_DIR"] = case.data_dir
    if case.specs_dir:
        env["MODEL_SPECS_DIR"] = case.specs_dir
    return env


def spawn_loop(case: Case, loop: str, folder: Path, timeout: float) -> dict | None:
    """Run one loop in its own process (its progress lines echoed); its raw result, or None
    when the process failed (the log's tail says why)."""
    home = folder / loop
    home.mkdir(parents=True, exist_ok=True)
    config, out, log = folder / f"{loop}.config.json", folder / f"{loop}.json", folder / f"{loop}.log"
    config.write_text(json.dumps({"case": asdict(case), "loop": loop, "home": str(home)}))
    print(f"-- {case.name}: {loop} loop in {home} (Dagster's log: {log})", flush=True)
    with open(log, "w") as err:
        proc = subprocess.Popen(
            [sys.executable, __file__, "_loop", str(config), str(out)],
            cwd=REPO,
            env=child_env(case, home),
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
            start_new_session=True,
        )
        timer = threading.Timer(timeout, lambda: os.killpg(proc.pid, signal.SIGKILL))
        timer.start()
        try:
            for line in proc.stdout:
                print(f"   [{loop}] {line.rstrip()}", flush=True)
            code = proc.wait()
        except BaseException:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            raise
        finally:
            timer.cancel()
    if code != 0:
        tail = log.read_text()[-3000:]
        print(f"!! {case.name} {loop} loop failed (exit {code}); the end of {log}:\n{tail}", flush=True)
        return None
    return json.loads(out.read_text())


def table(rows: Sequence[dict], columns: Sequence[str] | None = None) -> str:
    if not rows:
        return "  (none)"
    columns = list(columns or rows[0].keys())
    cells = [["" if r.get(c) is None else str(r.get(c)) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    lines = [columns, ["-" * w for w in widths], *cells]
    return "\n".join(
        "  " + "  ".join(v.ljust(w) for v, w in zip(line, widths, strict=True)) for line in lines
    )


def fmt(value, digits: int = 3, sign: bool = False) -> str:
    if value is None:
        return ""
    return f"{value:+.{digits}f}" if sign else f"{value:.{digits}f}"


def rmse_line(figure: dict | None) -> str:
    if not figure or figure["rmse"] is None:
        return "n/a"
    return (
        f"{figure['rmse']:.3f} min over {figure['first']} .. {figure['last']} "
        f"({figure['days']} days, {figure['trips']:,} trips)"
    )


def outcome(d: dict) -> str:
    if d["skipped"]:
        return "skipped: run key already used"
    if d["success"] is False:
        return "FAILED: " + (d["error"] or "").split(":")[0]
    return d["decision"] or "?"


def report_loop(loop: str, s: dict, initial: dict) -> None:
    print(
        f"\n== {loop} loop: {s['monitoring_runs']} monitoring run(s), {s['sensor_evaluations']} sensor "
        f"evaluation(s), {s['wall_s']:.0f} s ({s['home']})"
    )
    if s["episodes"]:
        for rule in sorted(s["breach_days"]):
            eps = [e for e in s["episodes"] if e["rule"] == rule]
            spans = ", ".join(f"{e['first']} .. {e['last']} ({e['days']})" for e in eps)
            print(f"breaches      {rule}: {s['breach_days'][rule]} day(s) in {len(eps)} episode(s): {spans}")
    else:
        print("breaches      none")
    print(
        f"emails        {s['emails']} (.eml files in the outbox; {s['email_messages']} distinct message "
        "id(s) in alerts)"
    )
    print(
        f"retrains      {s['retrain_requests']} requested, {s['retrain_runs']} run(s), "
        f"{s['skipped_requests']} skipped (run key already used); promotions: {len(s['promotions'])}"
    )
    print(f"failed runs   {s['failed_runs']}")
    for f in s["failures"]:
        print(f"  {f['job']} {f['partition']}: {f['error']}")
    print("retrain requests (margin = candidate - champion holdout RMSE on the same rows, minutes):")
    print(
        table(
            [
                {
                    "sensor after": d["asked_after"],
                    "breach day": d["partition"],
                    "rule": d["rule"],
                    "value": d["value"],
                    "outcome": outcome(d),
                    "version": d["version"] and f"v{d['version']}",
                    "candidate": fmt(d["candidate_rmse"]),
                    "champion": d["champion_version"]
                    and f"v{d['champion_version']} {fmt(d['champion_rmse'])}",
                    "margin": fmt(d["margin"], sign=True),
                    "in effect from": d["effective_from"],
                    "trained on": d["training_window"],
                    "train/holdout rows": d["n_train"] and f"{d['n_train']:,}/{d['n_holdout']:,}",
                }
                for d in s["decisions"]
            ]
        )
    )
    windows = {d["version"]: d["training_window"] for d in s["decisions"] if d["version"]}
    windows[initial.get("model_version")] = initial.get("training_window")
    by_version = {x["version"]: x for x in s["served"]}
    print("model timeline (what each model served in this loop):")
    print(
        table(
            [
                {
                    "model": f"v{t['model_version']}",
                    "in effect from": t["effective_from"],
                    "trained on": windows.get(str(t["model_version"])),
                    "holdout RMSE": fmt(t.get("holdout_rmse")),
                    "replaced": t.get("previous_version") and f"v{t['previous_version']}",
                    "days served": by_version.get(str(t["model_version"]), {}).get("days", 0),
                    "RMSE served": fmt(by_version.get(str(t["model_version"]), {}).get("rmse")),
                    "drift median/max": "/".join(
                        fmt(by_version.get(str(t["model_version"]), {}).get(k))
                        for k in ("drift_median", "drift_max")
                    ),
                    "rmse_ratio median/max": "/".join(
                        fmt(by_version.get(str(t["model_version"]), {}).get(k), 2)
                        for k in ("rmse_ratio_median", "rmse_ratio_max")
                    ),
                }
                for t in s["timeline"]
            ]
        )
    )
    print(
        f"RMSE (trip-weighted mean daily), from {SETTLE_DAYS} days after the daily loop's first breach: "
        f"{rmse_line(s['rmse_window'])}"
    )
    print(f"RMSE (trip-weighted mean daily), whole period: {rmse_line(s['rmse_period'])}")


def loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "n/a"


def run_case(case: Case, loops: Sequence[str], work: Path, timeout: float) -> dict:
    source = "synthetic generator" + (" (scenarios on)" if case.scenarios else " (scenarios off)")
    if case.trip_source != "synthetic":
        source = f"TLC files in {case.data_dir}"
    print(
        f"\n### case {case.name}: {case.start} .. {case.end}, {case.spec} trained on {case.train_month}, "
        f"trips from {source}; load {loadavg()}",
        flush=True,
    )
    started = time.perf_counter()
    raw = {loop: spawn_loop(case, loop, work / case.name, timeout) for loop in loops}
    wall = time.perf_counter() - started
    breach_from = raw.get("daily") or next((r for r in raw.values() if r), None)
    first = first_breach(breach_from["alerts"]) if breach_from else None
    # None (the whole period only) when there was no breach or the period ends too soon after it
    window_first = add_days(first, SETTLE_DAYS) if first else None
    if window_first is not None and window_first > case.end:
        window_first = None
    summaries = {}
    for loop, result in raw.items():
        if result is None:
            continue
        summaries[loop] = summarize(result, window_first)
        initial = (result["train"].get("model") or {}).get("metadata") or {}
        report_loop(loop, summaries[loop], initial)
    compared, pairs = None, []
    if len(summaries) == 2:
        compared = comparison(summaries["daily"], summaries["monthly"])
        pairs = segments(raw["daily"]["metrics"], raw["monthly"]["metrics"])
        print("\nthe same days, model against model (trip-weighted mean daily RMSE on the same trips):")
        print(
            table(
                [
                    {
                        "days": f"{p['first']} .. {p['last']} ({p['days']})",
                        "daily loop": f"v{p['daily_version']} {fmt(p['daily_rmse'])}",
                        "monthly loop": f"v{p['monthly_version']} {fmt(p['monthly_rmse'])}",
                        "daily - monthly": fmt(margin(p["daily_rmse"], p["monthly_rmse"]), sign=True),
                    }
                    for p in pairs
                ]
            )
        )
    print(f"\n{case.name}: wall {wall:.0f} s for {', '.join(loops)} (load {loadavg()})")
    if compared:
        print(
            f"{case.name}: daily {compared['daily_rmse']:.3f} vs monthly {compared['monthly_rmse']:.3f} min "
            f"(trip-weighted mean daily RMSE over {compared['first']} .. {compared['last']}, "
            f"{compared['days']} days; daily/monthly {compared['ratio']:.3f})",
            flush=True,
        )
    return {
        "case": asdict(case),
        "first_breach": first,
        "window_first": window_first,
        "wall_s": wall,
        "load_end": loadavg(),
        "loops": {
            loop: {
                **summaries[loop],
                "days": [
                    {
                        k: r.get(k)
                        for k in (
                            "timestamp",
                            "n_rows",
                            "model_version",
                            "prediction_drift",
                            "rmse",
                            "rmse_ratio",
                        )
                    }
                    for r in raw[loop]["metrics"]
                ],
            }
            for loop in summaries
        },
        "ticks": {
            loop: [
                {
                    "after": step["label"],
                    "skip": step.get("skip"),
                    "tick_error": step.get("tick_error"),
                    "requested": [r["run_key"] for r in step.get("requests", [])],
                }
                for step in raw[loop]["steps"]
            ]
            for loop in summaries
        },
        "failed_loops": [loop for loop, r in raw.items() if r is None],
        "comparison": compared,
        "segments": pairs,
    }


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "_loop":
        return loop_main(sys.argv[2:])
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--case", choices=["all", *CASES], default="all")
    parser.add_argument("--loops", default=",".join(LOOPS), help="daily,monthly (default both)")
    parser.add_argument("--start", help="first monitored day (overrides the case's)")
    parser.add_argument("--end", help="last monitored day (overrides the case's)")
    parser.add_argument("--train-month", help="YYYY-MM of the spec's first model (overrides the case's)")
    parser.add_argument(
        "--data-dir",
        help="TLC files for the real-data case (default: $TRIP_DATA_DIR, else ../shared/data/nyc-tlc)",
    )
    parser.add_argument("--spec", default=SPEC, help="the model spec to run")
    parser.add_argument("--specs-dir", help="a folder of spec files instead of the packaged ones")
    parser.add_argument("--timeout", type=float, default=3600, help="seconds, for each loop")
    parser.add_argument("--work-dir", help="the loops' folders go here (default: a temporary folder)")
    parser.add_argument(
        "--keep", action="store_true", help="keep the loops' folders (MLOPS_HOME, DAGSTER_HOME)"
    )
    parser.add_argument("--json", help="also write every figure here")
    args = parser.parse_args()
    loops = [x.strip() for x in args.loops.split(",") if x.strip()]
    if not loops or set(loops) - set(LOOPS):
        parser.error(f"--loops takes daily and/or monthly, got {args.loops!r}")
    data_dir = args.data_dir or os.environ.get("TRIP_DATA_DIR") or str(REPO.parent / "shared/data/nyc-tlc")
    data_dir = str(Path(data_dir).expanduser().resolve())
    names = list(CASES) if args.case == "all" else [args.case]
    cases = []
    for name in names:
        case = replace(CASES[name], spec=args.spec)
        if case.trip_source == "local":
            if not Path(data_dir).is_dir():
                parser.error(f"case {name} needs the TLC files: no folder {data_dir} (--data-dir)")
            case = replace(case, data_dir=data_dir)
        if args.specs_dir:
            case = replace(case, specs_dir=str(Path(args.specs_dir).resolve()))
        case = replace(
            case,
            start=args.start or case.start,
            end=args.end or case.end,
            train_month=args.train_month or case.train_month,
        )
        if case.end < case.start:
            parser.error(f"case {name}: --end {case.end} is before --start {case.start}")
        cases.append(case)

    work = Path(args.work_dir).resolve() if args.work_dir else Path(tempfile.mkdtemp(prefix="bench-cadence-"))
    work.mkdir(parents=True, exist_ok=True)
    print(f"bench folder: {work}", flush=True)
    out = {"settle_days": SETTLE_DAYS, "cases": {}}
    ok = False
    try:
        for case in cases:
            out["cases"][case.name] = run_case(case, loops, work, args.timeout)
        ok = not any(c["failed_loops"] for c in out["cases"].values())
        compared = [(n, c["comparison"]) for n, c in out["cases"].items() if c["comparison"]]
        if compared:
            print(
                f"\n### summary: trip-weighted mean daily RMSE from {SETTLE_DAYS} days after the first breach"
            )
            for name, c in compared:
                print(
                    f"{name}: daily {c['daily_rmse']:.3f} vs monthly {c['monthly_rmse']:.3f} min over "
                    f"{c['first']} .. {c['last']} ({c['days']} days): daily/monthly {c['ratio']:.3f}"
                )
        if args.json:
            Path(args.json).write_text(json.dumps(out, indent=2))
    finally:
        if args.keep or args.work_dir or not ok:
            print(f"\nkept {work} (each loop's MLOPS_HOME, DAGSTER_HOME, log and raw JSON)", flush=True)
        else:
            shutil.rmtree(work, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
