"""Benchmark the prediction service against a bare Django floor, in one run, with wrk.

    .venv/bin/python bench/serving.py [--duration 5] [--rounds 5] [--workers N]

What runs (each under gunicorn with the service's own server settings, serving/gunicorn.conf.py):

* the service: ``serving.wsgi`` (ninja API, input validation, middleware, JSON access log),
  serving ``models:/green_taxi_duration@champion`` from a fresh MLflow store;
* the floor: ``bench/floor_app`` - one bare Django view doing the same job with nothing
  else: for one trip ``json.loads``, one dict through the same skops ``DictVectorizer`` +
  ``LinearRegression`` pipeline, ``np.clip`` to the trained range, ``json.dumps`` (no
  pandas); for a batch the vectorised path (``mlops_core.features.design_matrix``). No
  validation, logging or middleware (``bench/floor_app/gunicorn.conf.py`` copies the
  service's server settings);
* each of them also behind its own nginx running the repository's proxy configuration
  (``config/nginx/serving.conf``, rewritten for loopback by ``bench/nginx.py`` as the proxy's
  test does), the way the compose stack publishes the service.

The model is trained on the real 2022-01 TLC month as the ``duration_model`` asset trains it
(``train_on_month``) and registered as champion; request bodies are real trips of 2022-02
(one trip; batches of 1,000 and 10,000). Data: ``MLOPS_TEST_DATA_DIR`` or
``../shared/data/nyc-tlc`` beside the repository. First it prints ``ModelBundle.predict``
timings with the feature code before issue 7 (``bench/baselines.py``) and now, and a single
trip through a one-row frame and without one (issue 28).

wrk (``apt-get install -y wrk``; one thread, a Lua script that POSTs the body and prints
p50/p99) drives every server from a separate process: single trips at 1, 16 and 64
connections, batches at 4 connections, directly and through nginx. In every round the
service and the floor run back to back (the order flips each round); the table shows
medians over the rounds, and each ratio is the median of the rounds' service/floor ratios,
so a burst of load from elsewhere on the machine moves a round's pair together rather than
one side of the comparison. The load average before and after is printed: on a shared
machine, re-run when it says the run was disturbed.

Targets (issue 28): a single trip at 16 connections >= 0.8x the floor's throughput with a
p99 <= 1.3x the floor's; batches of 1k and 10k trips >= 0.9x the floor's rows/s; the same
ratios are reported through nginx and at 1 and 64 connections.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # bench.baselines, and the project when run from another folder
SPEC_NAME = "green_taxi_duration"
JSON_BODY = {"Content-Type": "application/json"}  # the service refuses other types (415)

LUA = r"""
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local f = assert(io.open(os.getenv("WRK_BODY_FILE"), "rb"))
wrk.body = f:read("*a")
f:close()
done = function(summary, latency, requests)
  io.write(string.format(
    '\nRESULT {"requests": %d, "duration_us": %d, "p50_us": %d, "p99_us": %d, ' ..
    '"status_errors": %d, "socket_errors": %d}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    summary.errors.status,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout))
end
"""


@dataclass(frozen=True)
class Scenario:
    name: str
    body: str  # key of the body file
    rows: int
    connections: int

    def target(self) -> tuple[float, float | None] | None:
        """(least throughput ratio, largest p99 ratio) this scenario must meet, if any."""
        if self.rows == 1:
            return (SINGLE_TARGET, P99_TARGET) if self.connections == 16 else None
        return (BATCH_TARGET, None)


SINGLE_TARGET, P99_TARGET, BATCH_TARGET = 0.8, 1.3, 0.9
SCENARIOS = [
    Scenario("1 row, 1 conn", "one", 1, 1),
    Scenario("1 row, 16 conns", "one", 1, 16),
    Scenario("1 row, 64 conns", "one", 1, 64),
    Scenario("1k-row batch, 4 conns", "1k", 1_000, 4),
    Scenario("10k-row batch, 4 conns", "10k", 10_000, 4),
]
ROUTES = ("direct", "nginx")  # wrk -> gunicorn, and wrk -> nginx -> gunicorn


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """A gunicorn in its own process group; stopped with SIGTERM to the group."""

    def __init__(self, name: str, conf: str, env: dict, log: Path, extra: list[str]):
        self.name = name
        self.port = free_port()
        self.log = log
        env = {**env, "SERVING_PORT": str(self.port), "SERVING_HOST": "127.0.0.1"}
        gunicorn = str(Path(sys.executable).with_name("gunicorn"))
        self._out = open(log, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [gunicorn, "-c", conf, "--chdir", str(REPO), *extra],
            cwd=REPO,
            env=env,
            stdout=self._out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def wait(self, body: bytes, timeout: float = 90) -> None:
        import requests

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"{self.name} exited:\n{self.log.read_text()[-3000:]}")
            try:
                r = requests.post(self.url + "/predict", data=body, headers=JSON_BODY, timeout=2)
                if r.status_code == 200:
                    return
            except (requests.ConnectionError, requests.Timeout):
                pass
            time.sleep(0.2)
        raise SystemExit(f"{self.name} not ready after {timeout} s:\n{self.log.read_text()[-3000:]}")

    def stop(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=30)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)
        self._out.close()


def wrk(url: str, body_file: Path, connections: int, seconds: float, script: Path) -> dict:
    out = subprocess.run(
        [
            "wrk",
            "-t1",
            f"-c{connections}",
            f"-d{max(1, round(seconds))}s",
            "--timeout",
            "30s",
            "-s",
            str(script),
            url + "/predict",
        ],
        env={**os.environ, "WRK_BODY_FILE": str(body_file)},
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    line = next(x for x in out.splitlines() if x.startswith("RESULT "))
    result = json.loads(line.removeprefix("RESULT "))
    result["rps"] = result["requests"] / (result["duration_us"] / 1e6)
    return result


def trips(settings, start: str, end: str):
    """Cleaned trips of the default spec picked up in [start, end), from the real files."""
    from mlops_assets import resources as R
    from mlops_core.specs import load_specs

    spec = next(s for s in load_specs() if s.name == SPEC_NAME)
    source = R.trip_source(settings)
    return spec, source.trips_for(spec, datetime.fromisoformat(start), datetime.fromisoformat(end))[0]


def build_model(home: Path, data_dir: Path) -> tuple[str, Path]:
    """Train 2022-01, register as champion in ``home``; (model version, bundle folder)."""
    from mlops_assets import resources as R
    from mlops_assets.settings import Settings
    from mlops_assets.training.model import train_on_month

    settings = Settings.for_home(home, trip_data_dir=data_dir)
    spec, month = trips(settings, "2022-01-01", "2022-02-01")
    bundle, _ = train_on_month(spec, month)
    registry = R.model_registry(settings)
    registered = registry.register(
        bundle, artifact=spec.training.artifact, params={}, tags={"source": "bench"}
    )
    registry.set_champion(spec.name, registered.version)
    return registered.version, registry.bundle_dir(spec.name, registered.version)


def write_bodies(folder: Path, data_dir: Path) -> dict[str, Path]:
    from mlops_assets.settings import Settings

    settings = Settings.for_home(folder / "home", trip_data_dir=data_dir)
    _, trips_frame = trips(settings, "2022-02-01", "2022-02-15")
    cols = ["PULocationID", "DOLocationID", "trip_distance"]
    records = [
        {"PULocationID": int(a), "DOLocationID": int(b), "trip_distance": float(d)}
        for a, b, d in trips_frame[cols].itertuples(index=False)
    ]
    bodies = {"one": records[0], "1k": records[:1_000], "10k": records[:10_000]}
    paths = {}
    for key, body in bodies.items():
        paths[key] = folder / f"body-{key}.json"
        paths[key].write_text(json.dumps(body))
    return paths


def features_table(bundle_dir: Path) -> None:
    """``ModelBundle.predict`` with the feature code before issue 7 (the oracle kept in the
    tests) and now, and one trip through a one-row frame and without one (issue 28); same
    process, best of 5."""
    import numpy as np
    import pandas as pd

    from bench.baselines import original_predict
    from mlops_core import features
    from mlops_core.bundle import ModelBundle

    bundle = ModelBundle.load(bundle_dir)
    one = pd.DataFrame(
        {
            "PULocationID": pd.array([74], dtype="Int64"),
            "DOLocationID": pd.array([168], dtype="Int64"),
            "trip_distance": [2.5],
        }
    )

    def best_us(fn, n: int) -> float:
        fn()
        times = []
        for _ in range(5):
            start = time.perf_counter()
            for _ in range(n):
                fn()
            times.append((time.perf_counter() - start) / n)
        return min(times) * 1e6

    print("\nModelBundle.predict, feature code before issue 7 vs now (best of 5):\n")
    print("| rows | before (us) | now (us) | speed-up |")
    print("|---:|---:|---:|---:|")
    ref = bundle.reference
    for frame, n in ((one, 300), (ref.iloc[:1000], 20), (ref.iloc[:10000], 3), (ref, 2)):
        old = best_us(lambda f=frame: original_predict(bundle.pipeline, f, bundle.features), n)
        new = best_us(lambda f=frame: features.predict(bundle.pipeline, f, bundle.features), n)
        same = np.array_equal(
            original_predict(bundle.pipeline, frame, bundle.features),
            features.predict(bundle.pipeline, frame, bundle.features),
        )
        assert same, "the feature code changed its results"
        print(f"| {len(frame):,} | {old:,.0f} | {new:,.0f} | {old / new:.1f}x |")
    record = {"PULocationID": 74, "DOLocationID": 168, "trip_distance": 2.5}
    assert bundle.predict_one(record) == bundle.predict(one)[0], "the record path changed the result"
    framed = best_us(lambda: bundle.predict(one), 300)
    bare = best_us(lambda: bundle.predict_one(record), 300)
    print(
        f"\nOne trip: ModelBundle.predict on a one-row frame {framed:,.0f} us, "
        f"ModelBundle.predict_one on the record {bare:,.0f} us (same number; {framed / bare:.1f}x)"
    )
    print(flush=True)


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def load_average() -> str:
    return ", ".join(f"{x:.2f}" for x in os.getloadavg())


def main() -> None:
    from bench.nginx import Nginx
    from bench.nginx import binary as nginx_binary

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=int, default=5, help="seconds per wrk run")
    parser.add_argument("--rounds", type=int, default=5, help="service/floor pairs per scenario")
    parser.add_argument("--warmup", type=int, default=3, help="seconds of warm-up per server")
    parser.add_argument("--settle", type=int, default=8, help="seconds to wait after startup")
    parser.add_argument("--workers", type=int, default=None, help="gunicorn workers (both)")
    parser.add_argument("--json", help="also write the summary rows here (for bench/all.py)")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed: apt-get install -y wrk")
    if nginx_binary() is None:
        raise SystemExit("nginx is not installed: apt-get install -y nginx")
    data_dir = Path(os.environ.get("MLOPS_TEST_DATA_DIR") or REPO.parent / "shared" / "data" / "nyc-tlc")
    if not (data_dir / "green_tripdata_2022-01.parquet").is_file():
        raise SystemExit(f"real TLC data not found in {data_dir} (set MLOPS_TEST_DATA_DIR)")

    work = Path(tempfile.mkdtemp(prefix="bench-serving-"))
    servers: list[Server] = []
    proxies: list[Nginx] = []
    load_before = load_average()
    try:
        home = work / "home"
        home.mkdir()
        print(f"training 2022-01 and registering it in {home} ...", flush=True)
        version, bundle_dir = build_model(home, data_dir)
        features_table(bundle_dir)
        bodies = write_bodies(work, data_dir)
        script = work / "post.lua"
        script.write_text(LUA)

        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("SERVING_", "MODEL_")) and k != "MLFLOW_TRACKING_URI"
        }
        env.update({"MLOPS_HOME": str(home), "DJANGO_SECRET_KEY": "bench-only-not-secret"})
        if args.workers:
            env["SERVING_WORKERS"] = str(args.workers)
        service = Server("service", "serving/gunicorn.conf.py", env, work / "service.log", [])
        floor_env = {**env, "FLOOR_MODEL_DIR": str(bundle_dir)}
        floor = Server(
            "floor",
            "bench/floor_app/gunicorn.conf.py",
            floor_env,
            work / "floor.log",
            ["--pythonpath", str(REPO / "bench")],
        )
        servers = [service, floor]
        one = bodies["one"].read_bytes()
        for server in servers:
            server.wait(one)
        proxies = [Nginx(server.port, work / f"nginx-{server.name}.log") for server in servers]
        urls = {
            ("direct", "service"): service.url,
            ("direct", "floor"): floor.url,
            ("nginx", "service"): proxies[0].url,
            ("nginx", "floor"): proxies[1].url,
        }
        check_same_predictions(urls, bodies, version)
        # Each service worker imports mlflow in the background once its model is in (so the
        # first /reload is fast): let that finish before measuring.
        time.sleep(args.settle)
        for url in urls.values():  # warm-up: first requests pay for lazy imports and caches
            wrk(url, bodies["one"], 16, args.warmup, script)
            wrk(url, bodies["1k"], 4, 1, script)

        results = {
            (scenario.name, route, name): runs
            for scenario in SCENARIOS
            for route in ROUTES
            for name, runs in measure(scenario, route, urls, bodies, script, args).items()
        }
        workers = env.get("SERVING_WORKERS") or str(os.cpu_count())
        print_table(results, args, workers, load_before, load_average())
    finally:
        for proxy in proxies:
            proxy.stop()
        for server in servers:
            server.stop()
        shutil.rmtree(work, ignore_errors=True)


def measure(scenario: Scenario, route: str, urls, bodies, script: Path, args) -> dict[str, list[dict]]:
    """``args.rounds`` back-to-back runs of the service and the floor (order flipped each round)."""
    runs: dict[str, list[dict]] = {"service": [], "floor": []}
    for rnd in range(args.rounds):
        for name in ["service", "floor"] if rnd % 2 == 0 else ["floor", "service"]:
            r = wrk(urls[route, name], bodies[scenario.body], scenario.connections, args.duration, script)
            runs[name].append(r)
            errors = r["status_errors"] + r["socket_errors"]
            print(
                f"  {scenario.name:24} {route:6} {name:8} round {rnd + 1}: {r['rps']:8.1f} req/s  "
                f"p50 {r['p50_us'] / 1000:7.2f} ms  p99 {r['p99_us'] / 1000:7.2f} ms  errors {errors}",
                flush=True,
            )
    return runs


def check_same_predictions(urls: dict[tuple[str, str], str], bodies: dict[str, Path], version: str):
    import requests

    for key in ("one", "1k", "10k"):
        body = bodies[key].read_bytes()
        answers = {
            where: requests.post(url + "/predict", data=body, headers=JSON_BODY, timeout=60).json()
            for where, url in urls.items()
        }
        first = answers["direct", "service"]
        if first["model_version"] != version:
            raise SystemExit(f"the service serves version {first['model_version']}, not {version}")
        for where, answer in answers.items():
            if answer["duration_minutes"] != first["duration_minutes"]:
                raise SystemExit(f"{where} disagrees with the service on body {key!r}")
    print("service and floor, direct and through nginx: identical predictions (1, 1k, 10k rows)", flush=True)


def median(results: list[dict], key: str) -> float:
    return statistics.median(r[key] for r in results)


def paired_ratio(service: list[dict], floor: list[dict], key: str) -> float:
    """Median over rounds of service/floor, each round's two runs made back to back."""
    return statistics.median(s[key] / f[key] for s, f in zip(service, floor, strict=True))


def verdict(scenario: Scenario, ratio: float, p99_ratio: float) -> tuple[bool | None, str]:
    target = scenario.target()
    if target is None:
        return None, "(no target)"
    least, p99_most = target
    met = ratio >= least and (p99_most is None or p99_ratio <= p99_most)
    what = f">= {least}x" + (f", p99 <= {p99_most}x" if p99_most is not None else "")
    if scenario.rows > 1:
        what = f"rows/s {what}"
    return met, f"{'met' if met else 'MISSED'} ({what})"


def print_table(results, args, workers: str, load_before: str, load_after: str) -> None:
    print()
    print(
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} CPUs ({cpu_model()}), "
        f"Python {platform.python_version()}, gunicorn sync x {workers} workers, "
        f"wrk -t1, {args.duration} s per run, {args.rounds} rounds; load average "
        f"(1, 5, 15 min) {load_before} before, {load_after} after; throughput and latency "
        "are medians over the rounds, ratios the median of the rounds' service/floor ratios"
    )
    print()
    print(
        "| scenario | route | service req/s | floor req/s | ratio | service p50 / p99 ms "
        "| floor p50 / p99 ms | p99 ratio | service rows/s | floor rows/s | errors | target |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    summary = []
    for scenario in SCENARIOS:
        for route in ROUTES:
            s = results[(scenario.name, route, "service")]
            f = results[(scenario.name, route, "floor")]
            s_rps, f_rps = median(s, "rps"), median(f, "rps")
            s50, s99 = median(s, "p50_us") / 1000, median(s, "p99_us") / 1000
            f50, f99 = median(f, "p50_us") / 1000, median(f, "p99_us") / 1000
            ratio, p99_ratio = paired_ratio(s, f, "rps"), paired_ratio(s, f, "p99_us")
            errors = sum(r["status_errors"] + r["socket_errors"] for r in s + f)
            met, target = verdict(scenario, ratio, p99_ratio)
            print(
                f"| {scenario.name} | {route} | {s_rps:,.0f} | {f_rps:,.0f} | {ratio:.2f} "
                f"| {s50:.2f} / {s99:.2f} | {f50:.2f} / {f99:.2f} | {p99_ratio:.2f} "
                f"| {s_rps * scenario.rows:,.0f} | {f_rps * scenario.rows:,.0f} | {errors} | {target} |"
            )
            summary.append(
                {
                    "scenario": scenario.name,
                    "route": route,
                    "rows": scenario.rows,
                    "service_rps": s_rps,
                    "floor_rps": f_rps,
                    "ratio": ratio,
                    "p99_ratio": p99_ratio,
                    "service_p99_ms": s99,
                    "floor_p99_ms": f99,
                    "errors": errors,
                    "met": met,
                    "target": target,
                }
            )
    if getattr(args, "json", None):
        Path(args.json).write_text(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
