"""Where a one-trip ``POST /predict`` spends its time, in-process (no HTTP, no gunicorn).

    .venv/bin/python bench/serving_profile.py [--requests 3000] [--body trip.json]

Trains the default model on the real 2022-01 month (as ``bench/serving.py`` does), then, in
fresh processes taking turns, calls the WSGI application of the service (``serving.wsgi``:
middleware, ninja, validation, the model, the answer) and of the bare floor
(``bench/floor_app``) directly with one trip, and prints each one's time per request (best
of 5 loops) and their ratio. Then it profiles the service's loop with cProfile and prints
the functions with the largest cumulative time per request (cProfile roughly doubles every
figure; compare them with each other), and times gunicorn's JSON access-log line
(``serving.gunicorn_logging.JsonAccessLogger``), which runs outside the WSGI app. Figures in
BENCHMARKS.md ("Prediction service: where a request's time goes").
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
TRIP = {"PULocationID": 74, "DOLocationID": 168, "trip_distance": 2.5}
# cProfile rows worth reading: the service's own code and the libraries on its path
SHOWN = ("serving/", "mlops_core/", "ninja/", "django/", "pydantic", "sklearn/pipeline.py")


def package_of(where: str) -> str:
    """What a profiled function belongs to: its top-level package, or the kind of code."""
    if where == "~":  # C functions cProfile cannot place (builtins, methods of C types)
        return "builtins and C methods"
    if where.startswith("/"):  # the standard library (json, logging, copy, inspect...)
        return f"stdlib {Path(where).stem}"
    return where.split("/")[0].removesuffix(".py")


def wsgi_environ(body: bytes) -> dict:
    return {
        "REQUEST_METHOD": "POST",
        "PATH_INFO": "/predict",
        "SCRIPT_NAME": "",
        "QUERY_STRING": "",
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "8000",
        "HTTP_HOST": "127.0.0.1:8000",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "CONTENT_TYPE": "application/json",
        "CONTENT_LENGTH": str(len(body)),
        "wsgi.input": io.BytesIO(body),
        "wsgi.url_scheme": "http",
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": False,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
        "wsgi.version": (1, 0),
        "REMOTE_ADDR": "127.0.0.1",
    }


def load_app(kind: str, bundle_dir: Path):
    """The WSGI app of ``kind`` ("service" or "floor"), its model loaded as a worker's is."""
    os.environ["DJANGO_SECRET_KEY"] = "profile-only-not-secret"
    if kind == "floor":
        sys.path.insert(0, str(REPO / "bench"))
        os.environ["DJANGO_SETTINGS_MODULE"] = "floor_app.settings"
        os.environ["FLOOR_MODEL_DIR"] = str(bundle_dir)
        from floor_app.wsgi import application

        return application
    import gc

    os.environ["DJANGO_SETTINGS_MODULE"] = "serving.settings"
    os.environ["MODEL_URI"] = str(bundle_dir / "lin_reg.bin")
    os.environ["MLOPS_HOME"] = str(bundle_dir.parent)
    from serving.runtime import SERVICE
    from serving.wsgi import application

    SERVICE.stop()  # the module started the model thread; load in this thread instead
    SERVICE.start(background=False)
    assert SERVICE.current is not None, SERVICE.problem
    gc.collect()
    gc.freeze()  # as a worker does once its model is in
    return application


def child(kind: str, bundle_dir: Path, body: bytes, requests: int, profile: bool, top: int = 30) -> None:
    """Run in a fresh process: time (and maybe profile) ``requests`` calls; print JSON."""
    app = load_app(kind, bundle_dir)
    statuses = []

    def call() -> bytes:
        response = app(wsgi_environ(body), lambda status, headers, exc_info=None: statuses.append(status))
        out = b"".join(response)
        response.close()
        return out

    answer = json.loads(call())
    assert statuses[-1].startswith("200"), (statuses[-1], answer)
    for _ in range(requests // 5):
        call()
    loops = []
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(requests):
            call()
        loops.append((time.perf_counter() - start) / requests * 1e6)
    result: dict = {"kind": kind, "best_us": min(loops), "answer": answer["duration_minutes"]}
    if profile:
        import cProfile
        import pstats

        profiler = cProfile.Profile()
        profiler.enable()
        for _ in range(requests):
            call()
        profiler.disable()
        rows, packages = [], {}
        for (path, line, name), (_, calls, own, cumulative, _) in pstats.Stats(profiler).stats.items():
            where = path.split("site-packages/")[-1].replace(str(REPO) + "/", "")
            package = package_of(where)
            packages[package] = packages.get(package, 0.0) + own / requests * 1e6
            if where.startswith(SHOWN):
                rows.append((cumulative / requests * 1e6, calls / requests, f"{where}:{line} {name}"))
        result["profile"] = sorted(rows, reverse=True)[:top]
        result["packages"] = sorted(((us, p) for p, us in packages.items()), reverse=True)[:12]
        result["access_log_us"] = access_log_us()
    print("RESULT " + json.dumps(result), flush=True)


def access_log_us() -> float:
    """One line of the service's JSON access log (what gunicorn calls after each request)."""
    from datetime import timedelta

    from gunicorn.config import Config

    from serving.gunicorn_logging import JsonAccessLogger

    with tempfile.TemporaryDirectory() as tmp:
        cfg = Config()
        cfg.set("accesslog", str(Path(tmp) / "access.log"))
        logger = JsonAccessLogger(cfg)

        class Response:
            status, sent = "200 OK", 95
            headers = (("Content-Type", "application/json; charset=utf-8"), ("X-Model-Version", "1"))

        environ = {"REMOTE_ADDR": "127.0.0.1", "REQUEST_METHOD": "POST", "PATH_INFO": "/predict"}
        took = timedelta(microseconds=800)
        best = float("inf")
        for _ in range(5):
            start = time.perf_counter()
            for _ in range(5000):
                logger.access(Response, None, environ, took)
            best = min(best, (time.perf_counter() - start) / 5000 * 1e6)
        for handler in logger.access_log.handlers:
            handler.close()
    return best


def run_child(kind: str, bundle_dir: Path, body_file: Path, requests: int, profile: bool, top: int = 30):
    cmd = [sys.executable, __file__, "--child", kind, "--model-dir", str(bundle_dir), "--top", str(top)]
    cmd += ["--body", str(body_file), "--requests", str(requests)] + (["--profile"] if profile else [])
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    line = next((x for x in out.stdout.splitlines() if x.startswith("RESULT ")), None)
    if out.returncode != 0 or line is None:
        raise SystemExit(f"{kind} failed:\n{out.stderr[-3000:]}")
    return json.loads(line.removeprefix("RESULT "))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=3000, help="requests per timed loop")
    parser.add_argument("--body", help="a JSON file with one trip (default: a 2.5-mile trip 74 -> 168)")
    parser.add_argument("--rounds", type=int, default=3, help="service/floor process pairs")
    parser.add_argument("--model-dir", help="a saved bundle folder (default: train 2022-01)")
    parser.add_argument("--top", type=int, default=30, help="profile rows to print")
    parser.add_argument("--child", choices=["service", "floor"], help=argparse.SUPPRESS)
    parser.add_argument("--profile", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        body = Path(args.body).read_bytes()
        child(args.child, Path(args.model_dir), body, args.requests, args.profile, args.top)
        return

    with tempfile.TemporaryDirectory(prefix="bench-serving-profile-") as tmp:
        work = Path(tmp)
        if args.model_dir:
            bundle_dir = Path(args.model_dir)
        else:
            from bench.serving import build_model

            shared = REPO.parent / "shared" / "data" / "nyc-tlc"
            data_dir = Path(os.environ.get("MLOPS_TEST_DATA_DIR") or shared)
            print("training 2022-01 ...", flush=True)
            _, bundle_dir = build_model(work / "home", data_dir)
        body_file = work / "trip.json"
        body_file.write_text(Path(args.body).read_text() if args.body else json.dumps(TRIP))
        load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
        print(f"load average before: {load}; {args.requests} requests a loop, best of 5 loops\n")
        times: dict[str, list[float]] = {"service": [], "floor": []}
        answers = set()
        for rnd in range(args.rounds):
            for kind in ("service", "floor") if rnd % 2 == 0 else ("floor", "service"):
                result = run_child(kind, bundle_dir, body_file, args.requests, profile=False)
                times[kind].append(result["best_us"])
                answers.add(result["answer"])
                print(f"  {kind:8} round {rnd + 1}: {result['best_us']:7.1f} us a request", flush=True)
        assert len(answers) == 1, f"service and floor disagree: {answers}"
        service, floor = statistics.median(times["service"]), statistics.median(times["floor"])
        print(
            f"\none trip through the WSGI app: service {service:.0f} us, floor {floor:.0f} us "
            f"(medians over {args.rounds} processes each), service/floor {service / floor:.2f}x\n"
        )
        profiled = run_child("service", bundle_dir, body_file, args.requests, profile=True, top=args.top)
        print("the service under cProfile, cumulative us per request (inflated by the profiler):\n")
        print("| us | calls | function |")
        print("|---:|---:|---|")
        for cumulative, calls, where in profiled["profile"]:
            print(f"| {cumulative:,.1f} | {calls:g} | `{where}` |")
        print("\nown time by package, us per request (same profile):\n")
        print("| us | package |")
        print("|---:|---|")
        for own, package in profiled["packages"]:
            print(f"| {own:,.1f} | {package} |")
        print(f"\ngunicorn's JSON access-log line (outside the app): {profiled['access_log_us']:.1f} us")
        print(f"load average after: {', '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
