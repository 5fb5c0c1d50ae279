"""Shared fixtures: real TLC data, an isolated MLOPS_HOME per test, its ``Settings`` and
resources, a clean environment.

Real data comes from ``MLOPS_TEST_DATA_DIR`` (default ``../shared/data/nyc-tlc`` beside the
repository). Where it is absent the suite falls back to files written by the deterministic
synthetic generator, and says so in the header; CI sets ``MLOPS_REQUIRE_REAL_DATA=1`` so a
missing folder stops the run instead.

The code location's tests pass ``settings`` / ``resources`` (values, never the environment).
The environment is still cleared and set for what really reads it: the prediction service's
configuration, and the processes some tests start (``dagster dev``, gunicorn, ``make``).
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from mlops_assets.data.synthetic import generate_month
from mlops_assets.resources import build_resources
from mlops_assets.settings import Settings

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA_DIR = REPO.parent / "shared" / "data" / "nyc-tlc"
MONTHS = ("2021-01", "2021-02", "2021-03", "2022-01", "2022-02", "2022-03")
# Settings a developer may have exported; tests start from none of them.
ENV_VARS = (
    "MLOPS_HOME",
    "TRIP_DATA_DIR",
    "METRICS_DATABASE_URL",
    "MLFLOW_TRACKING_URI",
    "DRIFT_THRESHOLD",
    "MONITORING_BACKFILL_DAYS_PER_RUN",
    "MODEL_SPECS_DIR",
    "TRIP_SOURCE",
    "SYNTHETIC_SCENARIOS",
    "SYNTHETIC_TRIPS_PER_DAY",
    "ALERT_EMAIL_TO",
    "ALERT_EMAIL_FROM",
    "ALERT_EMAIL_TO_OPS",
    "FRESHNESS_DEADLINE",
    "FRESHNESS_WINDOW_DAYS",
    "RETRAIN_START_LIMIT_SECONDS",
    "SMTP_HOST",
    "SMTP_PORT",
    "SMTP_USER",
    "SMTP_PASSWORD",
    "SMTP_STARTTLS",
    "SERVING_URL",
    "SERVING_RELOAD_TOKEN",
    "MODEL_URI",
    "MODEL_POLL_SECONDS",
    "SERVING_PORT",
    "SERVING_WORKERS",
    "SERVING_MAX_BATCH_ROWS",
    "SERVING_MAX_BODY_BYTES",
    "SERVING_RELOAD_WAIT_SECONDS",
    "SERVING_ALLOWED_HOSTS",
    "SERVING_DEBUG",
    "DJANGO_SECRET_KEY",
    "DAGSTER_UI_URL",
    "GRAFANA_URL",
)


def real_data_dir() -> Path | None:
    path = Path(os.environ.get("MLOPS_TEST_DATA_DIR") or DEFAULT_DATA_DIR)
    return path if all((path / f"green_tripdata_{m}.parquet").is_file() for m in MONTHS) else None


def pytest_report_header(config):
    path = real_data_dir()
    if path:
        return f"trip data: real TLC files in {path}"
    return "trip data: SYNTHETIC fallback (real TLC files not found; set MLOPS_TEST_DATA_DIR)"


def pytest_configure(config):
    if os.environ.get("MLOPS_REQUIRE_REAL_DATA") == "1" and real_data_dir() is None:
        raise pytest.UsageError(
            "MLOPS_REQUIRE_REAL_DATA=1 but the real TLC files are not in "
            f"{os.environ.get('MLOPS_TEST_DATA_DIR') or DEFAULT_DATA_DIR}"
        )


@pytest.fixture(scope="session")
def trip_data_dir(tmp_path_factory) -> Path:
    """A folder of green taxi monthly files: the real ones, else synthetic stand-ins."""
    real = real_data_dir()
    if real is not None:
        return real
    folder = tmp_path_factory.mktemp("synthetic-tlc")
    for month in MONTHS:
        pq.write_table(generate_month("green", month), folder / f"green_tripdata_{month}.parquet")
    return folder


@pytest.fixture(scope="session")
def real_data() -> bool:
    return real_data_dir() is not None


@pytest.fixture(autouse=True)
def isolated_env(monkeypatch, tmp_path, trip_data_dir) -> Path:
    """Every test gets its own MLOPS_HOME and reads trips from ``trip_data_dir``."""
    for name in ENV_VARS:
        monkeypatch.delenv(name, raising=False)
    home = tmp_path / "mlops_home"
    home.mkdir()
    monkeypatch.setenv("MLOPS_HOME", str(home))
    monkeypatch.setenv("TRIP_DATA_DIR", str(trip_data_dir))
    dagster_home = tmp_path / "dagster_home"
    dagster_home.mkdir()
    (dagster_home / "dagster.yaml").write_text("telemetry:\n  enabled: false\nnux:\n  enabled: false\n")
    monkeypatch.setenv("DAGSTER_HOME", str(dagster_home))
    return home


@pytest.fixture
def settings(isolated_env, trip_data_dir) -> Settings:
    """This test's settings: every store in its MLOPS_HOME, trips from ``trip_data_dir``."""
    return Settings.for_home(isolated_env, trip_data_dir=trip_data_dir)


@pytest.fixture
def resources(settings) -> dict:
    """The code location's resources for ``settings`` (what ``definitions.py`` wires)."""
    return build_resources(settings)


_FIGURES: list[str] = []


@pytest.fixture
def report_figure():
    """Record a measured figure; all are printed in pytest's terminal summary."""

    def record(line: str) -> None:
        _FIGURES.append(line)

    return record


def pytest_terminal_summary(terminalreporter):
    if _FIGURES:
        terminalreporter.section("figures measured by the tests")
        for line in _FIGURES:
            terminalreporter.write_line(line)


# --- PostgreSQL -----------------------------------------------------------------------------
PG_ADMIN_URL = os.environ.get("MLOPS_TEST_PG_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres")


def _admin_engine():
    import sqlalchemy as sa

    return sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 5})


@contextlib.contextmanager
def throwaway_database(prefix: str = "mlops_test"):
    """Create a PostgreSQL database, yield its SQLAlchemy URL, drop it (even with connections).

    The server is required: if it is down this fails (start it with
    ``pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start``).
    """
    import uuid

    import sqlalchemy as sa

    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    admin = _admin_engine()
    try:
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    except sa.exc.OperationalError as exc:
        pytest.fail(f"PostgreSQL at {PG_ADMIN_URL} is not reachable: {exc.orig}")
    try:
        yield sa.make_url(PG_ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture
def postgres_url():
    """A fresh, throwaway PostgreSQL database for one test (dropped afterwards)."""
    with throwaway_database() as url:
        yield url


# --- a trained model, built once per session ------------------------------------------------
@pytest.fixture(scope="session")
def trained_home(tmp_path_factory, trip_data_dir) -> Path:
    """An MLOPS_HOME where the default spec's v1 was trained on 2022-01 through the real assets
    (trips of 2022-01 materialized, v1 champion, in effect from 2022-02-01). Tests copy it."""
    from mlops_assets.definitions import build_defs
    from mlops_assets_tests.helpers import default_spec, train_through_assets

    spec = default_spec()
    home = tmp_path_factory.mktemp("trained_home")
    defs = build_defs([spec], build_resources(Settings.for_home(home, trip_data_dir=trip_data_dir)))
    assert train_through_assets(defs, spec, "2022-01").success
    return home


@pytest.fixture
def home(trained_home, isolated_env) -> Path:
    """This test's MLOPS_HOME, starting as a copy of ``trained_home``."""
    import shutil

    shutil.copytree(trained_home, isolated_env, dirs_exist_ok=True)
    return isolated_env
