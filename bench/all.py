"""``make bench``: every benchmark in bench/, one after another, then one summary table.

Runs bench/backfill.py, bench/scale.py, bench/sensor.py and bench/serving.py (which needs wrk
and nginx: ``apt-get install -y wrk nginx``) as separate processes, shows their own output as it
comes, and prints one table of the ratios each measured against its baseline in the same run.
bench/cadence.py (the alert/retrain loop day by day vs monthly) is not part of it: about 10
minutes for its two cases, and its figures are decisions and RMSEs, not timings; run it alone. These
machines are noisy: compare the ratios, not the absolute times. Record the output in
BENCHMARKS.md with the command that made it.

    .venv/bin/python bench/all.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # bench.nginx

from bench.nginx import binary as nginx_binary  # noqa: E402


def run(script: str, args: list[str], out: Path) -> dict | list | None:
    print(f"\n=== bench/{script} {' '.join(args)}", flush=True)
    done = subprocess.run([sys.executable, str(HERE / script), *args, "--json", str(out)], cwd=HERE.parent)
    if done.returncode != 0:
        print(f"bench/{script} failed with exit code {done.returncode}", flush=True)
        return None
    return json.loads(out.read_text())


# bench/scale.py at small volumes: a smoke run of every part in a few minutes.
SCALE_QUICK = [
    "--trips-per-day", "5000", "--short-days", "7", "--long-days", "14",
    "--year-trips-per-day", "2000", "--year-days", "90",
]  # fmt: skip


def scale_rows(scale: dict) -> list[tuple[str, str, str, str]]:
    rows = []
    if single := scale.get("single"):
        short, long, loop = single["short"], single["long"], single["loop"]
        volume = f"{single['trips_per_day']:,}/day"
        rows.append(
            (
                f"scale {volume}: a day in a run vs plain Evidently loop, same reference (target <= 1.5)",
                f"{single['marginal_s']:.2f} s",
                f"{loop['model']['per_day_s']:.2f} s",
                f"{single['cost_ratio_model']:.2f}x",
            )
        )
        rows.append(
            (
                f"scale {volume}: peak RSS, {long['days']} vs {short['days']} days (target <= 1.3)",
                f"{long['peak_rss_bytes'] / 1024**3:.2f} GiB",
                f"{short['peak_rss_bytes'] / 1024**3:.2f} GiB",
                f"{single['memory_ratio']:.2f}x",
            )
        )
    if year := scale.get("year"):
        split, one = year["split"], year["one_run"]
        rows.append(
            (
                f"scale {year['days']} days via daemon: {split['runs']} runs "
                f"({split['max_concurrency']} at once) vs one run",
                f"{split['end_to_end_s']:.0f} s",
                f"{one['end_to_end_s']:.0f} s",
                f"{split['end_to_end_s'] / one['end_to_end_s']:.2f}x",
            )
        )
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--quick", action="store_true", help="fewer repeats (a smoke run, not for BENCHMARKS.md)"
    )
    args = parser.parse_args()
    rows: list[tuple[str, str, str, str]] = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        backfill = run(
            "backfill.py",
            ["--repeat", "1", "--skip-per-partition"] if args.quick else ["--repeat", "3"],
            tmp / "backfill.json",
        )
        if backfill:
            rows.append(
                (
                    "backfill: month, single run vs plain Evidently loop",
                    f"{backfill['single_run_s']:.1f} s",
                    f"{backfill['floor_s']:.1f} s",
                    f"{backfill['single_run_s'] / backfill['floor_s']:.2f}x",
                )
            )
            if backfill.get("per_partition_s"):
                rows.append(
                    (
                        "backfill: one run per partition vs single run",
                        f"{backfill['per_partition_s']:.1f} s",
                        f"{backfill['single_run_s']:.1f} s",
                        f"{backfill['per_partition_s'] / backfill['single_run_s']:.1f}x",
                    )
                )
        scale = run("scale.py", SCALE_QUICK if args.quick else [], tmp / "scale.json")
        if scale:
            rows += scale_rows(scale)
        sensor = run("sensor.py", ["--repeat", "5" if args.quick else "20"], tmp / "sensor.json")
        if sensor:
            for label in ("SQLite", "PostgreSQL"):
                by_years = {r["years"]: r for r in sensor if r["database"] == label}
                one, ten = by_years[min(by_years)], by_years[max(by_years)]
                rows.append(
                    (
                        f"sensor tick, {label}: 10 y vs 1 y of rows",
                        f"{ten['steady_s'] * 1000:.1f} ms",
                        f"{one['steady_s'] * 1000:.1f} ms",
                        f"{ten['steady_s'] / one['steady_s']:.2f}x",
                    )
                )
        if shutil.which("wrk") is None or nginx_binary() is None:
            print("\n=== bench/serving.py skipped: it needs wrk and nginx (apt-get install -y wrk nginx)")
        else:
            serving = run("serving.py", ["--rounds", "2" if args.quick else "5"], tmp / "serving.json")
            for r in serving or []:
                via = " through nginx" if r["route"] == "nginx" else ""
                target = "" if r["met"] is None else f" {r['target']}"
                rows.append(
                    (
                        f"serving {r['scenario']}{via} vs bare Django floor",
                        f"{r['service_rps']:,.0f} req/s",
                        f"{r['floor_rps']:,.0f} req/s",
                        f"{r['ratio']:.2f}x (p99 {r['p99_ratio']:.2f}x){target}",
                    )
                )
    print("\n=== summary (each ratio against a baseline measured in the same run)")
    widths = [
        max(len(r[i]) for r in [("benchmark", "measured", "baseline", "ratio"), *rows]) for i in range(4)
    ]
    for row in [("benchmark", "measured", "baseline", "ratio"), tuple("-" * w for w in widths), *rows]:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
