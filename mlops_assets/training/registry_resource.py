"""The model registry as the code location's Dagster resource (``model_registry``).

All the MLflow logic is in ``mlops_core.registry`` (the prediction service uses the same);
this only makes it a ``ConfigurableResource`` whose values the Dagster UI shows.
"""

from __future__ import annotations

import dagster as dg
from pydantic import PrivateAttr

from mlops_core.registry import RegistryOps


class ModelRegistry(RegistryOps, dg.ConfigurableResource):
    """MLflow tracking + registry at ``tracking_uri``, registered models' bundles cached in
    ``cache_dir``, a local store's artifacts under ``artifact_root``."""

    tracking_uri: str
    cache_dir: str
    artifact_root: str | None = None
    ui_url: str | None = None  # MLFLOW_UI_URL: the MLflow UI for links (default: an http(s) tracking URI)

    _client: object = PrivateAttr(default=None)
