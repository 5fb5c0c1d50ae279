"""The prediction service's settings, read from the environment when they are needed.

Like ``mlops_assets.settings``, nothing is read at import time, so a test (or an operator
with a restarted worker) changes a variable and the next load sees it. Django's own
settings (DEBUG, SECRET_KEY, ALLOWED_HOSTS, body size) live in ``serving/settings.py``.

* ``MODEL_URI`` (``models:/green_taxi_duration@champion``): ``models:/<name>@<alias>``,
  ``models:/<name>/<version>``, or a path to a ``lin_reg.bin`` (or to its folder).
* ``MLFLOW_TRACKING_URI`` (the SQLite store in ``MLOPS_HOME``): where ``models:/`` resolves.
* ``SERVING_RELOAD_TOKEN`` (unset): bearer token of ``POST /reload``; unset, reload is
  refused with 403.
* ``SERVING_MAX_BATCH_ROWS`` (10000): most trips one ``POST /predict`` may carry.
* ``SERVING_MAX_BODY_BYTES`` (8 MiB): largest request body (Django's
  DATA_UPLOAD_MAX_MEMORY_SIZE); larger is refused with 413 before it is read.
* ``MODEL_POLL_SECONDS`` (unset): when set (>= 1), every worker re-resolves the alias that
  often and swaps in the model it points to when it moved.
* ``SERVING_RELOAD_WAIT_SECONDS`` (10): how long ``/reload`` waits for the other workers.
"""

from __future__ import annotations

import os
from pathlib import Path

from mlops_assets import settings as platform_settings

DEFAULT_MODEL_URI = "models:/green_taxi_duration@champion"
DEFAULT_MAX_BATCH_ROWS = 10_000
DEFAULT_MAX_BODY_BYTES = 8 * 1024 * 1024  # 10k rows of full TLC records fit; features alone ~0.7 MB
DEFAULT_RELOAD_WAIT_SECONDS = 10.0
# Set by serving/gunicorn.conf.py for its workers: the folder where they agree on the model.
STATE_DIR_VARIABLE = "SERVING_STATE_DIR"


class ConfigError(ValueError):
    """A setting that cannot be used; the message names the variable."""


def _number(name: str, default: float | None, *, minimum: float) -> float | None:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = float(raw)
    except ValueError as exc:
        raise ConfigError(f"{name} must be a number, got {raw!r}") from exc
    if not value >= minimum:
        raise ConfigError(f"{name} must be at least {minimum}, got {raw!r}")
    return value


def model_uri() -> str:
    return (os.environ.get("MODEL_URI") or "").strip() or DEFAULT_MODEL_URI


def tracking_uri() -> str:
    return platform_settings.mlflow_tracking_uri()


def reload_token() -> str | None:
    """The reload token, or None when reloading over HTTP is disabled."""
    return (os.environ.get("SERVING_RELOAD_TOKEN") or "").strip() or None


def max_batch_rows() -> int:
    return int(_number("SERVING_MAX_BATCH_ROWS", DEFAULT_MAX_BATCH_ROWS, minimum=1))


def max_body_bytes() -> int:
    return int(_number("SERVING_MAX_BODY_BYTES", DEFAULT_MAX_BODY_BYTES, minimum=1024))


def poll_seconds() -> float | None:
    """``MODEL_POLL_SECONDS``: None (no polling) unless set; at least 1 s."""
    return _number("MODEL_POLL_SECONDS", None, minimum=1.0)


def reload_wait_seconds() -> float:
    return float(_number("SERVING_RELOAD_WAIT_SECONDS", DEFAULT_RELOAD_WAIT_SECONDS, minimum=0.0))


def state_dir() -> Path | None:
    value = os.environ.get(STATE_DIR_VARIABLE)
    return Path(value) if value else None
