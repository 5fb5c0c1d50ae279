"""Environment-backed settings, read when they are needed (never at import time).

Every variable is documented in the README and in ``.env.example``. Paths are resolved
to absolute paths so that a Dagster run subprocess and the process that started it agree.
"""

from __future__ import annotations

import os
from pathlib import Path

DEFAULT_DRIFT_THRESHOLD = 0.20


def mlops_home() -> Path:
    """``MLOPS_HOME`` (default ``./.mlops``): caches, artifacts, SQLite files, the outbox."""
    return Path(os.environ.get("MLOPS_HOME") or ".mlops").expanduser().resolve()


def trip_data_dir() -> Path | None:
    """``TRIP_DATA_DIR``: a folder of TLC monthly parquet files read instead of downloading."""
    value = os.environ.get("TRIP_DATA_DIR")
    return Path(value).expanduser().resolve() if value else None


def metrics_database_url() -> str:
    """``METRICS_DATABASE_URL`` (default: a SQLite file in ``MLOPS_HOME``)."""
    return os.environ.get("METRICS_DATABASE_URL") or f"sqlite:///{mlops_home() / 'metrics.db'}"


def mlflow_tracking_uri() -> str:
    """``MLFLOW_TRACKING_URI`` (default: a SQLite store in ``MLOPS_HOME``)."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{mlops_home() / 'mlflow.db'}"


def drift_threshold() -> float:
    """``DRIFT_THRESHOLD`` (default 0.20); a model spec may override it."""
    raw = os.environ.get("DRIFT_THRESHOLD")
    if raw is None or raw.strip() == "":
        return DEFAULT_DRIFT_THRESHOLD
    try:
        value = float(raw)
    except ValueError as exc:
        raise ValueError(f"DRIFT_THRESHOLD must be a number, got {raw!r}") from exc
    if not value > 0:
        raise ValueError(f"DRIFT_THRESHOLD must be positive, got {raw!r}")
    return value
