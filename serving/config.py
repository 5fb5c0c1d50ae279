"""The prediction service's settings: the one module of the service that reads the environment.

Nothing is read at import time: a reload sees a changed variable. Django's settings module
(``serving/settings.py``) takes DEBUG, SECRET_KEY, ALLOWED_HOSTS and the body size from here.

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
* ``MODEL_SPECS_DIR`` (the packaged specs): documents a model's request fields before one loads.
* ``SERVING_DEBUG``, ``DJANGO_SECRET_KEY``, ``SERVING_ALLOWED_HOSTS``: Django (see settings.py).
* ``SERVING_TEST_LOAD_DELAY_SECONDS`` (unset): for tests only, every model load first sleeps
  this long (a slow registry, made on purpose: the readiness tests); a warning says so.
"""

from __future__ import annotations

import os
from pathlib import Path

from mlops_core import home as H
from mlops_core.specs import PACKAGED_SPECS_DIR
from mlops_core.text import parse_number

DEFAULT_MODEL_URI = "models:/green_taxi_duration@champion"
DEFAULT_MAX_BATCH_ROWS = 10_000
DEFAULT_MAX_BODY_BYTES = 8 * 1024 * 1024  # 10k rows of full TLC records fit; features alone ~0.7 MB
DEFAULT_RELOAD_WAIT_SECONDS = 10.0
# Set by serving/gunicorn.conf.py for its workers: the folder where they agree on the model.
STATE_DIR_VARIABLE = "SERVING_STATE_DIR"


def _number(name: str, default: float | None, *, minimum: float) -> float | None:
    return parse_number(name, os.environ.get(name), default, minimum=minimum)


def model_uri() -> str:
    return (os.environ.get("MODEL_URI") or "").strip() or DEFAULT_MODEL_URI


def mlops_home() -> Path:
    return H.resolve_home(os.environ.get("MLOPS_HOME"))


def tracking_uri() -> str:
    """``MLFLOW_TRACKING_URI`` (default: the SQLite store in ``MLOPS_HOME``)."""
    return os.environ.get("MLFLOW_TRACKING_URI") or H.default_tracking_uri(mlops_home())


def bundle_cache_dir() -> Path:
    """Where registered models' bundles are cached (shared with the code location)."""
    return H.models_cache(mlops_home())


def specs_dir() -> Path:
    return Path(os.environ.get("MODEL_SPECS_DIR") or PACKAGED_SPECS_DIR)


def bound_mlflow_client_retries() -> None:
    """The MLflow REST client retries for minutes by default; a ``/reload`` must finish well
    within gunicorn's worker timeout (30 s): at most 2 tries of 5 s, unless set."""
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")


# --- Django (read once, by serving/settings.py) -----------------------------------------------
def debug() -> bool:
    return os.environ.get("SERVING_DEBUG", "") == "1"


def secret_key() -> str | None:
    return os.environ.get("DJANGO_SECRET_KEY") or None


def allowed_hosts() -> list[str]:
    raw = os.environ.get("SERVING_ALLOWED_HOSTS") or "localhost,127.0.0.1"
    return [h.strip() for h in raw.split(",") if h.strip()]


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


def load_delay_seconds() -> float:
    """``SERVING_TEST_LOAD_DELAY_SECONDS``: seconds every model load sleeps first (tests only)."""
    return float(_number("SERVING_TEST_LOAD_DELAY_SECONDS", 0.0, minimum=0.0))
