"""Fixtures of the prediction-service tests: Django set up once, real models, real gunicorn.

Django is configured with the service's own settings (``serving.settings``) and the test
environment (``testserver`` allowed as a host). Models are trained on the real 2022-01 TLC
month (``train_month``); ``service`` gives each test a fresh ``ModelService`` loading
``MODEL_URI`` synchronously, in the test's own MLOPS_HOME (root conftest): the service reads
its environment (``serving/config.py``), so tests set its variables. Registries the tests
write to are ``mlops_core.registry.MlflowRegistry`` objects (the service's own class) on the
store the service reads by default, ``MLOPS_HOME/mlflow.db`` (``home_registry``).
``GunicornServer`` runs ``gunicorn -c serving/gunicorn.conf.py`` as a real process group.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

# Django reads its settings once, at setup: start from the service's defaults whatever a
# developer has exported (the root conftest clears the settings read at call time).
for _name in (
    "SERVING_DEBUG",
    "SERVING_ALLOWED_HOSTS",
    "DJANGO_SECRET_KEY",
    "SERVING_MAX_BODY_BYTES",
):
    os.environ.pop(_name, None)
os.environ["DJANGO_SETTINGS_MODULE"] = "serving.settings"

import django  # noqa: E402

django.setup()

from django.test import Client  # noqa: E402
from django.test.utils import setup_test_environment, teardown_test_environment  # noqa: E402

from bench.support import free_port  # noqa: E402
from mlops_assets_tests.helpers import default_spec, load_trips, register_champion, train_month  # noqa: E402
from mlops_core import home as H  # noqa: E402
from mlops_core.bundle import ModelBundle  # noqa: E402
from mlops_core.registry import MlflowRegistry  # noqa: E402
from serving import runtime  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
LIVE_TOKEN = "e2e-reload-token"
GUNICORN = Path(sys.executable).with_name("gunicorn")


SERVICE_VARIABLES = (
    "MODEL_POLL_SECONDS",
    "SERVING_MAX_BATCH_ROWS",
    "SERVING_RELOAD_WAIT_SECONDS",
    "SERVING_STATE_DIR",
    "SERVING_TEST_LOAD_DELAY_SECONDS",
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES",
    "MLFLOW_HTTP_REQUEST_TIMEOUT",
)


@pytest.fixture(autouse=True)
def clean_service_environment(monkeypatch):
    """The service's own call-time settings, unset (the root conftest handles the rest)."""
    for name in SERVICE_VARIABLES:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="session", autouse=True)
def django_test_environment():
    setup_test_environment()
    yield
    teardown_test_environment()


@pytest.fixture(scope="session")
def spec():
    return default_spec()


@pytest.fixture(scope="session")
def january_model(spec, trip_data_dir) -> ModelBundle:
    """The default spec's model trained on 2022-01, as the duration_model asset trains it."""
    return train_month(spec, trip_data_dir, "2022-01")


@pytest.fixture(scope="session")
def february_model(spec, trip_data_dir) -> ModelBundle:
    """A second, different model (trained on 2022-02): the 'new champion' of reload tests."""
    return train_month(spec, trip_data_dir, "2022-02")


@pytest.fixture(scope="session")
def march_trips(spec, trip_data_dir):
    """Real cleaned trips the models never saw (first week of 2022-03)."""
    return load_trips(spec, trip_data_dir, "2022-03-01", "2022-03-08")


def copy_bundle(bundle: ModelBundle) -> ModelBundle:
    """A bundle whose ``info`` registering may change (it sets ``info.version``)."""
    return dataclasses.replace(bundle, info=dataclasses.replace(bundle.info))


def home_registry(home: Path) -> MlflowRegistry:
    """The registry the service reads when only ``MLOPS_HOME=home`` is set: the SQLite store
    and bundle cache in ``home`` (artifacts of new registrations under ``home/mlartifacts``)."""
    home = H.resolve_home(str(home))
    return MlflowRegistry(
        tracking_uri=H.default_tracking_uri(home),
        cache_dir=str(H.models_cache(home)),
        artifact_root=str(H.artifact_root(home)),
    )


@pytest.fixture(scope="session")
def registry_template(tmp_path_factory, spec, january_model, february_model) -> Path:
    """An MLOPS_HOME whose MLflow store holds v1 = January (champion) and v2 = February.

    Registered once per session through the real path (``register_champion``); tests get a
    copy of the store (``registry``), so each may move aliases without touching the others.
    """
    home = tmp_path_factory.mktemp("registry-template")
    registry = home_registry(home)
    assert register_champion(spec, copy_bundle(january_model), registry).version == "1"
    v2 = registry.register(copy_bundle(february_model), artifact="lin_reg.bin", params={}, tags={})
    assert v2.version == "2"
    return home


def install_registry(template: Path, home: Path) -> None:
    """Copy the template's MLflow store and bundle cache into ``home`` (artifacts stay put)."""
    shutil.copy2(template / "mlflow.db", home / "mlflow.db")
    shutil.copytree(template / "models", home / "models", dirs_exist_ok=True)


@pytest.fixture
def registry(registry_template, isolated_env) -> MlflowRegistry:
    """The test's default MLflow store, holding v1 (champion) and v2 (see registry_template)."""
    install_registry(registry_template, isolated_env)
    return home_registry(isolated_env)


@pytest.fixture
def model_dir(tmp_path, january_model) -> Path:
    """``january_model`` saved as a bundle folder (lin_reg.bin, model.json, reference.parquet)."""
    return january_model.save(tmp_path / "model").parent


@pytest.fixture
def service(monkeypatch) -> Iterator[runtime.ModelService]:
    """A fresh ModelService in place of the process-wide one; call ``.start(background=False)``."""
    fresh = runtime.ModelService()
    monkeypatch.setattr(runtime, "SERVICE", fresh)
    yield fresh
    fresh.stop()


@pytest.fixture
def served(service, model_dir, monkeypatch):
    """The January model (domain trip_distance in [0, 80]) served from its bundle folder."""
    monkeypatch.setenv("MODEL_URI", str(model_dir / "lin_reg.bin"))
    service.start(background=False)
    assert service.current is not None, service.problem
    return service


@pytest.fixture
def client() -> Client:
    return Client()


def trip_payload(row) -> dict:
    """One trips-frame row as the JSON object a client sends."""
    return {
        "PULocationID": int(row["PULocationID"]),
        "DOLocationID": int(row["DOLocationID"]),
        "trip_distance": float(row["trip_distance"]),
    }


# --- a real gunicorn --------------------------------------------------------------------------
@dataclass
class GunicornServer:
    """``gunicorn -c serving/gunicorn.conf.py`` in its own process group on a free port."""

    env: dict
    log_path: Path
    proc: subprocess.Popen | None = None
    port: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, *, wait_ready: bool = True, timeout: float = 120.0) -> GunicornServer:
        import requests

        self.port = free_port()
        env = {**self.env, "SERVING_PORT": str(self.port), "SERVING_HOST": "127.0.0.1"}
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [str(GUNICORN), "-c", "serving/gunicorn.conf.py", "--chdir", str(REPO)],
            cwd=REPO,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        path = "/ready" if wait_ready else "/health"
        # /ready answers from whichever worker accepts; a worker accepts only once its model is
        # loaded (test_readiness.py). With wait_ready, the log must also show every worker
        # serving, so a test starts with all of them ready whatever the readiness code does.
        workers = int(env.get("SERVING_WORKERS") or 1) if wait_ready else 0
        try:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"gunicorn exited ({self.proc.returncode}):\n{self.log()}")
                try:
                    up = requests.get(self.url + path, timeout=1).status_code == 200
                    if up and self.workers_serving() >= workers:
                        return self
                except (requests.ConnectionError, requests.Timeout):
                    pass
                time.sleep(0.1)
            raise RuntimeError(f"gunicorn not answering {path} after {timeout} s:\n{self.log()}")
        except BaseException:
            self.stop()
            raise

    def workers_serving(self) -> int:
        """How many worker processes have logged that they serve a model."""
        pids = set()
        for line in self.log().splitlines():
            if '"logger": "serving"' in line and '"message": "serving ' in line:
                with contextlib.suppress(ValueError, KeyError):
                    pids.add(json.loads(line)["pid"])
        return len(pids)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self) -> None:
        """SIGTERM the process group, SIGKILL it after 15 s; reap; check nothing is left."""
        if self.proc is None:
            return
        pgid = self.proc.pid
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(pgid, signal.SIGKILL)
            self.proc.wait(timeout=5)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                os.killpg(pgid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.05)
        else:
            os.killpg(pgid, signal.SIGKILL)
            raise AssertionError(f"gunicorn's process group {pgid} outlived its master")
        self.proc = None
        self._log.close()


@pytest.fixture(scope="session")
def live(tmp_path_factory, registry_template):
    """gunicorn (2 workers) serving the champion (v1) of a copy of the template store.

    Shared by the HTTP tests and the fuzz run; a test that moves the champion puts v1 back.
    """
    home = tmp_path_factory.mktemp("live-home")
    install_registry(registry_template, home)
    tmp = tmp_path_factory.mktemp("live-tmp")
    env = server_env(home, SERVING_RELOAD_TOKEN=LIVE_TOKEN, SERVING_WORKERS="2", TMPDIR=str(tmp))
    server = GunicornServer(env, home / "gunicorn.log").start()
    server.registry = home_registry(home)
    server.tmp = tmp
    yield server
    server.stop()
    assert list(tmp.iterdir()) == [], "gunicorn left its state folder behind"


def server_env(home: Path, **extra: str) -> dict:
    """The environment of a service process: this one's, less the settings tests control."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SERVING_", "MODEL_"))}
    env.pop("MLFLOW_TRACKING_URI", None)
    env.pop("DJANGO_SETTINGS_MODULE", None)
    env.update({"MLOPS_HOME": str(home), "SERVING_ACCESS_LOG": "1", "PYTHONUNBUFFERED": "1"})
    env.update(extra)
    return env
