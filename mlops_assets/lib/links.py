"""Where a person looks next: the Dagster UI and Grafana, as the ``links`` resource.

Emails and metadata that point somewhere take their addresses from here (``DAGSTER_UI_URL``,
``GRAFANA_URL``); the daily reports' and MLflow's addresses belong to the report store and
the model registry. Values, so the Dagster UI shows them under Deployment → Resources.
"""

from __future__ import annotations

from urllib.parse import quote

import dagster as dg

DEFAULT_DAGSTER_UI_URL = "http://localhost:3000"


class Links(dg.ConfigurableResource):
    dagster_ui_url: str = DEFAULT_DAGSTER_UI_URL
    grafana_url: str | None = None

    def dagster(self, path: str) -> str:
        return f"{self.dagster_ui_url.rstrip('/')}/{path.lstrip('/')}"

    def asset_partitions(self, key: dg.AssetKey) -> str:
        """An asset's partitions page."""
        return self.dagster(f"assets/{'/'.join(quote(p) for p in key.path)}?view=partitions")

    def run(self, run_id: str) -> str:
        return self.dagster(f"runs/{run_id}")
