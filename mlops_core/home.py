"""Where local state lives by default: ``MLOPS_HOME`` and the stores inside it."""

from __future__ import annotations

from pathlib import Path

DEFAULT_HOME = ".mlops"


def resolve_home(value: str | None) -> Path:
    """``MLOPS_HOME`` as an absolute path (default ``./.mlops``), so a Dagster run subprocess
    and the process that started it agree."""
    return Path(value or DEFAULT_HOME).expanduser().resolve()


def default_metrics_url(home: Path) -> str:
    return f"sqlite:///{home / 'metrics.db'}"


def default_tracking_uri(home: Path) -> str:
    return f"sqlite:///{home / 'mlflow.db'}"


def models_cache(home: Path) -> Path:
    """Bundles of registered models, one folder per model and version."""
    return home / "models"


def artifact_root(home: Path) -> Path:
    """MLflow artifacts of a local (SQLite or file) tracking store."""
    return home / "mlartifacts"
