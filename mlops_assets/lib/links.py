"""Where a person looks next: the Dagster UI and Grafana, as the ``links`` resource.

Emails and metadata that point somewhere take their addresses from here (``DAGSTER_UI_URL``,
``GRAFANA_URL``, and for the alert emails ``REPORTS_URL`` and ``MLFLOW_UI_URL``; the assets'
metadata takes the last two from the report store and the model registry). Values, so the
Dagster UI shows them under Deployment → Resources.
"""

from __future__ import annotations

from urllib.parse import quote

import dagster as dg

DEFAULT_DAGSTER_UI_URL = "http://localhost:3000"


class Links(dg.ConfigurableResource):
    dagster_ui_url: str = DEFAULT_DAGSTER_UI_URL
    grafana_url: str | None = None
    reports_url: str | None = None  # where MLOPS_HOME/reports is served (<model>/<day>.html)
    mlflow_ui_url: str | None = None

    def dagster(self, path: str) -> str:
        return f"{self.dagster_ui_url.rstrip('/')}/{path.lstrip('/')}"

    def asset_partitions(self, key: dg.AssetKey) -> str:
        """An asset's partitions page."""
        return self.dagster(f"assets/{'/'.join(quote(p) for p in key.path)}?view=partitions")

    def run(self, run_id: str) -> str:
        return self.dagster(f"runs/{run_id}")

    def asset_partition(self, key: dg.AssetKey, partition: str) -> str:
        """One partition of an asset, on its partitions page."""
        return f"{self.asset_partitions(key)}&partition={quote(partition)}"

    def report(self, model_name: str, day: str) -> str | None:
        """The day's Evidently report, when ``reports_url`` is set."""
        if not self.reports_url:
            return None
        return f"{self.reports_url.rstrip('/')}/{quote(model_name)}/{quote(day)}.html"

    def mlflow_version(self, model_name: str, version: str) -> str | None:
        """A registered model version's page in the MLflow UI, when ``mlflow_ui_url`` is set."""
        if not self.mlflow_ui_url:
            return None
        return f"{self.mlflow_ui_url.rstrip('/')}/#/models/{quote(model_name)}/versions/{quote(version)}"
