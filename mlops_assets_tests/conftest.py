"""Shared fixtures: real TLC data, an isolated MLOPS_HOME per test, a clean environment.

Real data comes from ``MLOPS_TEST_DATA_DIR`` (default ``../shared/data/nyc-tlc`` beside the
repository). Where it is absent the suite falls back to files written by the deterministic
synthetic generator, and says so in the header; CI sets ``MLOPS_REQUIRE_REAL_DATA=1`` so a
missing folder stops the run instead.
"""

from __future__ import annotations

import os
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from mlops_assets.data.synthetic import generate_month

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
    "MODEL_SPECS_DIR",
    "TRIP_SOURCE",
    "ALERT_EMAIL_TO",
    "ALERT_EMAIL_FROM",
    "SMTP_HOST",
    "SMTP_PORT",
    "SMTP_USER",
    "SMTP_PASSWORD",
    "SMTP_STARTTLS",
    "SERVING_URL",
    "SERVING_RELOAD_TOKEN",
    "MODEL_URI",
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
    (dagster_home / "dagster.yaml").write_text(
        "telemetry:\n  enabled: false\nnux:\n  enabled: false\n"
    )
    monkeypatch.setenv("DAGSTER_HOME", str(dagster_home))
    return home


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
