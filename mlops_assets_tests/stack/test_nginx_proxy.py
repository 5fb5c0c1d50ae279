"""The prediction service behind nginx (compose service `serving-proxy`), as real processes.

Exercises config/nginx/serving.conf, the repository's file, run by real nginx in front of real
gunicorn started with the `serving` service's command, environment and healthcheck from
docker-compose.yml (two sync workers, as in compose), serving the champion (v1, trained on the
real 2022-01 trips through the assets) of a copy of the session's trained MLOPS_HOME. Slow
clients (headers sent byte by byte; a body that stops halfway) keep hammering nginx while a
normal client is served, and nginx closes them after its timeouts without gunicorn ever
seeing them; without nginx, two of them block gunicorn. nginx's own errors are JSON with
`nosniff`, the 8 MiB body limit matches the service's, and the client's Host and address are
forwarded (checked against a small echo server standing in for gunicorn).

Replaced: Docker. `server serving:8000` and `listen 8000` become loopback ports (the only
rewrites of the file), and the image's nginx.conf becomes a minimal one with the same
http-level settings and temporary paths in a private folder (`bench/nginx.py`'s `render`,
which the serving benchmark uses too). Debian's nginx (1.22) runs here;
the image runs 1.30. nginx must be installed (`apt-get install -y nginx`; .ci/run does it and
sets MLOPS_REQUIRE_NGINX=1, so CI fails rather than skips without it).
"""

from __future__ import annotations

import http.server
import json
import os
import re
import shutil
import socket
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest
import requests

from bench.nginx import render
from bench.support import stop_process, wait_for
from mlops_assets_tests.stack.support import (
    REPO,
    SECRETS,
    bind_source,
    compose,
    dotenv,
    run_python_healthcheck,
    service_environment,
    start_listening,
)
from mlops_core import home as H
from serving import config as serving_config

pytestmark = pytest.mark.e2e

BIN = Path(sys.executable).parent
TRIP = {"PULocationID": 74, "DOLocationID": 168, "trip_distance": 2.5}


def nginx_binary() -> str:
    path = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)
    if path is None:
        reason = (
            "nginx is not installed: the prediction service's proxy (config/nginx/serving.conf) is "
            "tested with the real one. Install it: apt-get install -y nginx (.ci/run does this)."
        )
        if os.environ.get("MLOPS_REQUIRE_NGINX") == "1":
            pytest.fail(reason)  # CI must run these tests
        pytest.skip(reason)
    return path


def stack_config() -> dict:
    return compose(dotenv(**SECRETS))


def proxy_config_file() -> Path:
    return bind_source(stack_config(), "serving-proxy", "/etc/nginx/conf.d/default.conf")


def directive(name: str) -> str:
    """A directive's value in the proxy's configuration file (it must appear exactly once)."""
    found = re.findall(rf"^\s*{name}\s+([^;]+);", proxy_config_file().read_text(), re.M)
    assert len(found) == 1, f"{name}: {found}"
    return found[0].strip()


def seconds(value: str) -> float:
    match = re.fullmatch(r"(\d+)(s?)", value)
    assert match, f"not a number of seconds: {value}"
    return float(match.group(1))


class Nginx:
    """nginx running the repository's proxy configuration, listening on a free loopback port,
    its upstream ``serving:8000`` replaced by ``127.0.0.1:<upstream_port>``."""

    def __init__(self, upstream_port: int):
        self.upstream_port = upstream_port
        # Private, but traversable: when the tests run as root, nginx's workers run as `nobody`
        # and write request bodies into client_temp.
        self.prefix = Path(tempfile.mkdtemp(prefix="mlops-nginx-"))
        self.prefix.chmod(0o755)
        self.proc = None
        self.port = 0

    def render(self, port: int) -> Path:
        # the same rewrite as the serving benchmark's (bench/nginx.py)
        return render(proxy_config_file().read_text(), self.upstream_port, port, self.prefix)

    def start(self) -> Nginx:
        binary = nginx_binary()

        def build(port):
            main = self.render(port)
            return [binary, "-c", str(main), "-p", f"{self.prefix}/", "-g", "daemon off;"], {
                "PATH": os.environ["PATH"]
            }

        def answers(port) -> bool:
            try:
                requests.get(f"http://127.0.0.1:{port}/_proxy_errors/ping", timeout=2)
            except requests.RequestException:
                return False
            return True

        try:
            self.proc, self.port = start_listening(
                build,
                cwd=self.prefix,
                log_path=self.prefix / "nginx.out",
                ready=answers,
                what="nginx",
                timeout=30,
            )
        except BaseException:
            shutil.rmtree(self.prefix, ignore_errors=True)
            raise
        return self

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def error_log(self) -> str:
        path = self.prefix / "error.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def access_log(self) -> list[dict]:
        lines = (self.prefix / "nginx.out").read_text(errors="replace").splitlines()
        return [json.loads(line) for line in lines if line.startswith('{"time"')]

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)
            self.proc = None
        shutil.rmtree(self.prefix, ignore_errors=True)


class Gunicorn:
    """The compose `serving` service: its command, environment and healthcheck (/ready), on
    loopback, reading the champion from ``home``'s MLflow store."""

    def __init__(self, home: Path, tmp: Path):
        self.home, self.tmp = home, tmp
        self.log_path = tmp / "gunicorn.log"

    def start(self) -> Gunicorn:
        service = stack_config()["services"]["serving"]
        env = service_environment(stack_config(), "serving")
        assert env["SERVING_WORKERS"] == "2"  # the setting: two sync workers

        def build(port):
            cmd = [
                part.replace("/opt/dagster/app/gunicorn.conf.py", str(REPO / "serving" / "gunicorn.conf.py"))
                for part in service["command"]
            ]
            return [str(BIN / cmd[0]), *cmd[1:]], {
                **env,
                "SERVING_HOST": "127.0.0.1",
                "SERVING_PORT": str(port),
                "MLOPS_HOME": str(self.home),
                "MLFLOW_TRACKING_URI": H.default_tracking_uri(self.home),
                "TMPDIR": str(self.tmp),
                "PYTHONUNBUFFERED": "1",  # as the image sets it (Dockerfile)
                "PYTHONPATH": str(REPO),
                "PATH": os.environ["PATH"],
            }

        def ready(port) -> bool:
            # the compose healthcheck, on this port; it asks one worker: the log must show the
            # others serving too (a worker accepts only once loaded, test_readiness.py)
            test = service["healthcheck"]["test"]
            healthy = run_python_healthcheck(test, ("127.0.0.1:8000", f"127.0.0.1:{port}"))
            return healthy and self.workers_serving() >= int(env["SERVING_WORKERS"])

        self.proc, self.port = start_listening(
            build, cwd=self.tmp, log_path=self.log_path, ready=ready, what="gunicorn's /ready"
        )
        return self

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def workers_serving(self) -> int:
        """How many worker processes have logged that they serve a model."""
        pids = set()
        for line in self.log().splitlines():
            if '"logger": "serving"' in line and '"message": "serving ' in line:
                pids.add(json.loads(line)["pid"])
        return len(pids)

    def access_log(self) -> list[dict]:
        """(path, status) of every request gunicorn answered (its JSON access log)."""
        entries = [json.loads(x) for x in self.log().splitlines() if x.startswith('{"time"')]
        return [{"path": e["path"], "status": e["status"]} for e in entries if "status" in e]

    def answered(self, path: str, status: int) -> bool:
        """Whether gunicorn answered ``path`` with ``status`` (its access log, written just after)."""
        entry = {"path": path, "status": status}
        return bool(wait_for(lambda: entry in self.access_log(), timeout=10, interval=0.1, what=str(entry)))

    def stop(self) -> None:
        stop_process(self.proc)


@pytest.fixture(scope="module")
def served(trained_home, tmp_path_factory):
    """gunicorn serving v1, and nginx in front of it."""
    nginx_binary()  # fail first, and clearly, without nginx
    home = tmp_path_factory.mktemp("proxied-home")
    shutil.copytree(trained_home, home, dirs_exist_ok=True)
    service = Gunicorn(home, tmp_path_factory.mktemp("gunicorn")).start()
    proxy = None
    try:
        proxy = Nginx(service.port).start()
        yield service, proxy
    finally:
        if proxy is not None:
            proxy.stop()
        service.stop()


# --- raw HTTP -------------------------------------------------------------------------------
def exchange(port: int, data: bytes, timeout: float = 30) -> bytes:
    """Send ``data`` on a new connection and read until the server closes it."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(data)
        out = b""
        while chunk := sock.recv(65536):
            out += chunk
    return out


def parse(raw: bytes) -> tuple[int, list[tuple[str, str]], bytes]:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = [tuple(part.strip() for part in line.split(":", 1)) for line in lines[1:]]
    return int(lines[0].split()[1]), [(k.lower(), v) for k, v in headers], body


def assert_json_error(raw: bytes, status: int, detail: str) -> None:
    code, headers, body = parse(raw)
    assert code == status, raw[:500]
    assert ("content-type", "application/json") in headers, headers
    assert [v for k, v in headers if k == "x-content-type-options"] == ["nosniff"], headers
    assert json.loads(body) == {"detail": detail}
    assert ("server", "nginx") in headers  # server_tokens off: no version


# --- slow clients ---------------------------------------------------------------------------
class SlowClient(threading.Thread):
    """Keeps one slow connection open to ``port`` until stopped; when the server closes it,
    records how long it lasted and opens another one at once.

    ``headers``: a request whose headers arrive one byte every 0.2 s and never end.
    ``body``: complete headers announcing 2000 bytes of body, 1000 bytes, then nothing.
    """

    def __init__(self, port: int, kind: str, stop: threading.Event):
        super().__init__(daemon=True)
        self.port, self.kind, self.stop_event = port, kind, stop
        self.lifetimes: list[float] = []  # seconds each connection lasted before the server closed it
        self.answers: list[bytes] = []  # what the server sent before closing, if anything
        self.open = False
        self.connected = threading.Event()
        self.error: BaseException | None = None

    def run(self):
        try:
            while not self.stop_event.is_set():
                self._one_connection()
        except BaseException as exc:  # reported by the test
            self.error = exc

    def _one_connection(self):
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=10)
        opened = time.monotonic()
        self.open = True
        self.connected.set()
        received = b""
        try:
            if self.kind == "headers":
                sock.sendall(b"POST /slow-headers-probe HTTP/1.1\r\nHost: localhost\r\nX-Slow: ")
            else:
                sock.sendall(
                    b"POST /stalled-body-probe HTTP/1.1\r\nHost: localhost\r\n"
                    b"Content-Type: application/json\r\nContent-Length: 2000\r\n\r\n" + b" " * 1000
                )
            sock.settimeout(0.2)
            while not self.stop_event.is_set():
                if self.kind == "headers":
                    sock.sendall(b"a")
                try:
                    chunk = sock.recv(65536)
                except TimeoutError:
                    continue
                received += chunk
                if not chunk:
                    break  # closed by the server
            else:
                return  # stopped by the test: not a server-side close
        except (ConnectionResetError, BrokenPipeError):
            pass  # closed (reset) by the server
        finally:
            self.open = False
            sock.close()
        self.lifetimes.append(time.monotonic() - opened)
        self.answers.append(received)


def start_slow_clients(port: int, headers: int, bodies: int) -> tuple[list[SlowClient], threading.Event]:
    stop = threading.Event()
    clients = [SlowClient(port, "headers", stop) for _ in range(headers)]
    clients += [SlowClient(port, "body", stop) for _ in range(bodies)]
    for client in clients:
        client.start()
    for client in clients:
        assert client.connected.wait(10), "a slow client could not connect"
    return clients, stop


def stop_slow_clients(clients: list[SlowClient], stop: threading.Event) -> None:
    stop.set()
    for client in clients:
        client.join(10)
    errors = [c.error for c in clients if c.error is not None]
    assert errors == [], errors


def predict(session: requests.Session, url: str, timeout: float = 30) -> tuple[requests.Response, float]:
    started = time.monotonic()
    response = session.post(url + "/predict", json=TRIP, timeout=timeout)
    return response, time.monotonic() - started


# --- the tests ------------------------------------------------------------------------------
def test_without_the_proxy_two_slow_clients_block_gunicorn(served, report_figure):
    """The finding nginx fixes: gunicorn published directly, two slow sockets hold both sync
    workers and a normal request waits (checked with a 5 s client timeout, then released)."""
    service, _ = served
    with requests.Session() as session:
        assert predict(session, service.url)[0].status_code == 200
    clients, stop = start_slow_clients(service.port, headers=2, bodies=0)
    try:
        time.sleep(1)  # both connections accepted by the two workers
        with requests.Session() as session, pytest.raises(requests.Timeout):
            predict(session, service.url, timeout=5)
        assert all(client.open for client in clients)  # gunicorn never dropped them
    finally:
        stop_slow_clients(clients, stop)
    # once they go, the workers are free again
    with requests.Session() as session:
        response = wait_for(
            lambda: (r := predict(session, service.url)[0]).status_code == 200 and r,
            timeout=60,
            what="gunicorn to serve again",
        )
    assert response.json()["model_version"] == "1"
    report_figure("without nginx: 2 slow-header sockets held both gunicorn workers (a request waited > 5 s)")


def test_slow_clients_cannot_starve_the_service_behind_nginx(served, report_figure):
    service, proxy = served
    header_timeout = seconds(directive("client_header_timeout"))
    body_timeout = seconds(directive("client_body_timeout"))
    # four times as many slow connections as gunicorn has workers, reopened as soon as closed
    clients, stop = start_slow_clients(proxy.port, headers=4, bodies=4)
    latencies, open_during = [], []
    try:
        time.sleep(1)
        with requests.Session() as session:
            for _ in range(20):
                open_during.append(sum(client.open for client in clients))
                response, took = predict(session, proxy.url)
                open_during.append(sum(client.open for client in clients))
                assert response.status_code == 200, response.text
                assert response.json()["model_version"] == "1"
                assert response.headers["X-Model-Version"] == "1"
                latencies.append(took)
        # Every slow connection is closed by nginx after its timeout (then reopened).
        wait_for(
            lambda: all(client.lifetimes for client in clients),
            timeout=max(header_timeout, body_timeout) * 6,
            what="nginx to close every slow connection",
        )
        with requests.Session() as session:
            during_cuts = [predict(session, proxy.url)[0].status_code for _ in range(3)]
    finally:
        stop_slow_clients(clients, stop)

    # the normal client was served while at least as many slow connections as workers were open
    assert min(open_during) >= 2, open_during
    assert during_cuts == [200, 200, 200]
    headers = [t for c in clients if c.kind == "headers" for t in c.lifetimes]
    bodies = [t for c in clients if c.kind == "body" for t in c.lifetimes]
    # closed by nginx's timeouts: not before them, and within the functional deadline above
    assert min(headers) >= header_timeout - 0.5, headers
    assert min(bodies) >= body_timeout - 0.5, bodies
    # nginx closes timed-out connections without an answer (reset_timedout_connection)
    assert all(answer == b"" for c in clients for answer in c.answers), [c.answers for c in clients]
    # nginx logs each as a 408 it never passed on (no upstream status)...
    timed_out = [e for e in proxy.access_log() if e["uri"] in ("/slow-headers-probe", "/stalled-body-probe")]
    assert {e["uri"] for e in timed_out} == {"/slow-headers-probe", "/stalled-body-probe"}
    assert len([e for e in timed_out if e["status"] == 408]) >= len(headers) + len(bodies)
    assert {e["upstream_status"] for e in timed_out} == {""}
    # (the connections the test itself dropped at the end are logged as 400)
    assert len([e for e in timed_out if e["status"] != 408]) <= len(clients)
    assert "client timed out" in proxy.error_log()
    # ...and gunicorn never saw one of them: nginx passes only complete requests
    assert "slow-headers-probe" not in service.log() and "stalled-body-probe" not in service.log()
    report_figure(
        f"behind nginx, with 8 slow connections held open (2 gunicorn workers): a normal /predict "
        f"took median {statistics.median(latencies) * 1000:.0f} ms, max {max(latencies) * 1000:.0f} ms "
        f"(20 requests); nginx closed slow headers after {statistics.median(headers):.1f} s and "
        f"stalled bodies after {statistics.median(bodies):.1f} s (median)"
    )


def test_the_body_limit_is_the_services_and_too_large_gets_json_413(served):
    _, proxy = served
    limit = directive("client_max_body_size")
    assert limit == f"{serving_config.DEFAULT_MAX_BODY_BYTES // 2**20}m"  # 8 MiB, the service's default
    limit_bytes = serving_config.DEFAULT_MAX_BODY_BYTES
    headers = {"Content-Type": "application/json"}
    too_large = requests.post(
        proxy.url + "/predict", data=b" " * (limit_bytes + 1), headers=headers, timeout=60
    )
    assert too_large.status_code == 413
    assert too_large.headers["Content-Type"] == "application/json"
    assert too_large.headers["X-Content-Type-Options"] == "nosniff"
    assert too_large.json() == {"detail": "request body too large (at most 8 MiB)"}
    # exactly at the limit it passes, and the service answers it
    body = json.dumps([TRIP]).encode()
    at_limit = requests.post(
        proxy.url + "/predict", data=body + b" " * (limit_bytes - len(body)), headers=headers, timeout=60
    )
    assert at_limit.status_code == 200, at_limit.text[:300]
    assert at_limit.json()["model_version"] == "1" and len(at_limit.json()["duration_minutes"]) == 1
    # a chunked body (no Content-Length) is read whole by nginx and sent on with a length
    chunked = requests.post(
        proxy.url + "/predict", data=iter([body[:10], body[10:]]), headers=headers, timeout=30
    )
    assert chunked.status_code == 200, chunked.text[:300]


def test_nginx_errors_are_json_and_the_services_own_answers_pass_through(served):
    service, proxy = served
    port = proxy.port
    assert_json_error(exchange(port, b"NOT HTTP AT ALL\r\n\r\n"), 400, "bad request")
    assert_json_error(
        exchange(port, b"GET /" + b"a" * 40_000 + b" HTTP/1.1\r\nHost: localhost\r\n\r\n"),
        414,
        "request URI too long",
    )
    assert_json_error(
        exchange(port, b"GET / HTTP/1.1\r\nHost: localhost\r\nX-Big: " + b"a" * 20_000 + b"\r\n\r\n"),
        400,
        "request headers too large",
    )
    assert_json_error(exchange(port, b"GET /health HTTP/1.1\r\n\r\n"), 400, "bad request")  # no Host
    assert_json_error(
        exchange(port, b"TRACE / HTTP/1.1\r\nHost: localhost\r\n\r\n"), 405, "method not allowed"
    )
    # the error pages are internal: asked for directly, they do not exist
    assert_json_error(
        exchange(port, b"GET /_proxy_errors/502 HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"),
        404,
        "not found",
    )
    # the service's own errors are its own (not replaced by nginx's), with one nosniff header
    code, headers, body = parse(
        exchange(port, b"GET /no-such-path HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
    )
    assert code == 404 and json.loads(body)["detail"] != "not found"
    assert [v for k, v in headers if k == "x-content-type-options"] == ["nosniff"]
    assert service.answered("/no-such-path", 404)
    # The client's Host reaches the service, which checks it (SERVING_ALLOWED_HOSTS):
    # nginx does not replace it with the upstream's name `serving`, which is allowed.
    assert "serving" in service_environment(stack_config(), "serving")["SERVING_ALLOWED_HOSTS"].split(",")
    wrong = requests.get(proxy.url + "/model", headers={"Host": "evil.example"}, timeout=10)
    assert wrong.status_code == 400 and wrong.json()["detail"] != "bad request"  # the service's
    assert service.answered("/model", 400)
    right = requests.get(proxy.url + "/ready", headers={"Host": f"localhost:{port}"}, timeout=10)
    assert right.status_code == 200 and right.json()["model_version"] == "1"
    assert right.headers["Server"] == "nginx"


class Echo(http.server.BaseHTTPRequestHandler):
    """Answers with the request's headers and body length (standing in for gunicorn)."""

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        out = json.dumps({"headers": dict(self.headers.items()), "length": len(body)}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    do_GET = do_POST

    def log_message(self, *args):
        pass


def test_host_and_client_address_are_forwarded_and_a_dead_upstream_is_json_502():
    echo = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Echo)
    thread = threading.Thread(target=echo.serve_forever, daemon=True)
    thread.start()
    proxy = Nginx(echo.server_address[1]).start()
    try:
        seen = requests.post(
            proxy.url + "/predict",
            data=b"{}",
            headers={"Host": f"LocalHost:{proxy.port}", "X-Forwarded-For": "6.6.6.6", "X-Real-IP": "6.6.6.6"},
            timeout=10,
        ).json()
        headers = {k.lower(): v for k, v in seen["headers"].items()}
        assert headers["host"] == "localhost"  # the client's, without the port (Django checks it)
        assert headers["x-forwarded-for"] == "127.0.0.1"  # the client's address, not what it claimed
        assert headers["x-real-ip"] == "127.0.0.1"
        assert headers["x-forwarded-proto"] == "http"
        assert seen["length"] == 2
        echo.shutdown()
        echo.server_close()
        dead = exchange(proxy.port, b"GET /ready HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        assert_json_error(dead, 502, "the prediction service is not answering")
    finally:
        proxy.stop()
        echo.server_close()
