"""Benchmark: one drift_alert_sensor evaluation over ten years of daily rows in dummy_metrics.

For SQLite and PostgreSQL (a throwaway database each), fills ``dummy_metrics`` with one year
and then ten years of daily rows for the model (and three other models: 14,600 rows in all for
ten years), then times the real sensor (``dg.build_sensor_context`` with the project's
resources; this includes Dagster's own invocation and resource set-up):

* cold:   the first evaluation, no cursor: reads all ten years, records the historical
          breaches once and emails them in one message (to the outbox);
* steady: the daily case, one new row since the cursor (not a breach);
* idle:   nothing new since the cursor.

Baselines measured in the same run on the same database: the original design's check (one
indexed query for the latest row of the model, compared with the threshold), and the same
sensor over one year of history. The point: a tick costs the same after ten years as after
one (ratio 10y/1y ~ 1), because it reads only rows newer than its cursor and fetches only
breaching ones. Median of ``--repeat`` evaluations.

    .venv/bin/python bench/sensor.py [--repeat 20] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import sys
import tempfile
import time
import uuid
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import sqlalchemy as sa

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

MODEL = "green_taxi_duration"
OTHERS = ("model_b", "model_c", "model_d")
YEARS = 10
PG_ADMIN = os.environ.get("MLOPS_TEST_PG_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres")


def fill(db, start: datetime, days: int) -> None:
    from mlops_assets.lib.storage.engine import utcnow
    from mlops_assets.monitoring.store import DailyMetricsStore
    from mlops_core.daily_metrics import DailyMetrics

    rng = np.random.default_rng(7)
    computed = utcnow() - timedelta(days=1)
    rows = []
    for model in (MODEL, *OTHERS):
        drift = np.clip(rng.normal(0.08, 0.03, size=days), 0.001, 0.19)
        drift[60::120] = 0.25  # a breach every 120 days: 3 in one year, 30 in ten
        for i in range(days):
            rows.append(
                DailyMetrics(
                    model_name=model,
                    timestamp=start + timedelta(days=i),
                    model_version="1",
                    prediction_drift=float(drift[i]),
                    num_drifted_columns=1,
                    share_missing_values=0.0,
                    n_rows=2500,
                    n_scored=2500,
                    drift_threshold=0.2,
                    computed_at=computed,
                )
            )
    for i in range(0, len(rows), 2000):
        DailyMetricsStore(db).upsert(rows[i : i + 2000])


def timed(fn, repeat: int) -> tuple[float, object]:
    times, value = [], None
    for _ in range(repeat):
        started = time.perf_counter()
        value = fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times), value


def bench_database(url: str, label: str, repeat: int, home: Path, years: int) -> dict:
    import dagster as dg

    from mlops_assets.alerting.store import AlertStore
    from mlops_assets.definitions import build_defs
    from mlops_assets.lib.storage.engine import utcnow
    from mlops_assets.monitoring.store import DailyMetricsStore, dummy_metrics
    from mlops_assets.resources import build_resources
    from mlops_assets.settings import Settings
    from mlops_core.daily_metrics import DailyMetrics
    from mlops_core.specs import load_specs

    spec = next(s for s in load_specs() if s.name == MODEL)
    defs = build_defs([spec], build_resources(Settings.for_home(home, metrics_database_url=url)))
    db = defs.resources["metrics_db"]
    days = 365 * years
    start = datetime(2016, 1, 1)
    fill(db, start, days)
    sensor = defs.resolve_sensor_def(f"drift_alert_sensor__{MODEL}")
    instance = dg.DagsterInstance.ephemeral()

    def evaluate(cursor):
        with dg.build_sensor_context(instance=instance, cursor=cursor, resources=defs.resources) as ctx:
            return sensor(ctx)

    started = time.perf_counter()
    cold = evaluate(None)
    cold_s = time.perf_counter() - started
    breaches = len(AlertStore(db).all(MODEL))
    cursor = cold.cursor

    day = [start + timedelta(days=days)]

    def steady():
        nonlocal cursor
        DailyMetricsStore(db).upsert(
            [
                DailyMetrics(
                    model_name=MODEL,
                    timestamp=day[0],
                    model_version="1",
                    prediction_drift=0.05,
                    num_drifted_columns=1,
                    share_missing_values=0.0,
                    n_rows=2500,
                    n_scored=2500,
                    drift_threshold=0.2,
                    computed_at=utcnow(),
                )
            ]
        )
        day[0] += timedelta(days=1)
        started = time.perf_counter()
        result = evaluate(cursor)
        elapsed = time.perf_counter() - started
        cursor = result.cursor
        return elapsed

    steady_times = [steady() for _ in range(repeat)]
    idle_s, _ = timed(lambda: evaluate(cursor), repeat)
    # The sensor's own work (its queries and decisions) without Dagster's invocation machinery.
    from mlops_assets.alerting import sensor as sensor_module

    mailer = defs.resources["mailer"]
    logic_s, _ = timed(
        lambda: sensor_module.evaluate(
            spec,
            instance=instance,
            cursor=cursor,
            metrics_db=db,
            mailer=mailer,
            links=defs.resources["links"],
            log=logging.getLogger("bench"),
        ),
        repeat,
    )

    engine = db.engine()
    latest = (
        sa.select(dummy_metrics.c.timestamp, dummy_metrics.c.prediction_drift)
        .where(dummy_metrics.c.model_name == MODEL)
        .order_by(dummy_metrics.c.timestamp.desc())
        .limit(1)
    )

    def baseline():
        with engine.connect() as conn:
            row = conn.execute(latest).one()
        return row.prediction_drift > 0.2

    baseline_s, _ = timed(baseline, repeat)
    with engine.connect() as conn:
        total = conn.execute(sa.select(sa.func.count()).select_from(dummy_metrics)).scalar()
    return {
        "database": label,
        "years": years,
        "rows": total,
        "historical_breaches": breaches,
        "cold_s": cold_s,
        "steady_s": statistics.median(steady_times),
        "idle_s": idle_s,
        "logic_s": logic_s,
        "baseline_s": baseline_s,
        "emails": len(list((home / "outbox").glob("*.eml"))),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()
    import warnings

    warnings.filterwarnings("ignore")
    results = []
    admin = sa.create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    with tempfile.TemporaryDirectory() as tmp:
        for years in (1, YEARS):
            results.append(
                bench_database(
                    f"sqlite:///{tmp}/metrics{years}.db",
                    "SQLite",
                    args.repeat,
                    Path(tmp) / f"s{years}",
                    years,
                )
            )
            name = f"bench_sensor_{uuid.uuid4().hex[:8]}"
            with admin.connect() as conn:
                conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
            try:
                url = sa.make_url(PG_ADMIN).set(database=name).render_as_string(hide_password=False)
                results.append(bench_database(url, "PostgreSQL", args.repeat, Path(tmp) / f"p{years}", years))
            finally:
                with admin.connect() as conn:
                    conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    print(f"drift_alert_sensor evaluations, median of {args.repeat} (ms)")
    header = (
        f"{'database':<11} {'history':>8} {'rows':>6} {'breaches':>8} {'cold':>7} {'steady':>7} {'idle':>7} "
        f"{'idle, sensor logic only':>24} {'baseline':>9}"
    )
    print(header)
    for r in results:
        print(
            f"{r['database']:<11} {str(r['years']) + ' y':>8} {r['rows']:>6} {r['historical_breaches']:>8} "
            f"{r['cold_s'] * 1000:>7.1f} {r['steady_s'] * 1000:>7.1f} {r['idle_s'] * 1000:>7.1f} "
            f"{r['logic_s'] * 1000:>24.1f} {r['baseline_s'] * 1000:>9.2f}"
        )
    print()
    for label in ("SQLite", "PostgreSQL"):
        one, ten = (
            next(r for r in results if r["database"] == label and r["years"] == y) for y in (1, YEARS)
        )
        print(
            f"{label}: steady tick 10 y / 1 y = {ten['steady_s'] / one['steady_s']:.2f}; "
            f"steady tick / original design's single query = {ten['steady_s'] / ten['baseline_s']:.0f}x "
            f"(cold tick emailed {ten['historical_breaches']} historical breaches in {ten['emails']} email)"
        )
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
