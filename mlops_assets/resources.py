"""Every resource of the code location, built once from ``Settings`` with concrete values.

Paths and URLs are plain values (the Dagster UI shows them under Deployment → Resources);
secrets are ``dg.EnvVar``, so the UI shows the variable's name and never its value. Tests
build their own ``Settings.for_home(tmp_path, ...)`` and call ``build_resources`` (or build
a single resource directly).
"""

from __future__ import annotations

import dagster as dg

from mlops_assets import constants as C
from mlops_assets.data.sources import TripSource
from mlops_assets.lib.io import PartitionedParquetIOManager
from mlops_assets.lib.links import Links
from mlops_assets.lib.mailer import Mailer
from mlops_assets.lib.storage.engine import MetricsDB
from mlops_assets.monitoring.reports import ReportStore
from mlops_assets.ops.policy import OpsPolicy
from mlops_assets.settings import Settings
from mlops_assets.training.registry_resource import ModelRegistry
from mlops_assets.training.serving_client import ServingClient
from mlops_core import home as H


def trip_source(settings: Settings) -> TripSource:
    return TripSource(
        kind=settings.trip_source_kind,
        data_dir=str(settings.trip_data_dir) if settings.trip_data_dir else None,
        cache_dir=str(settings.home / "cache" / "tlc"),
        synthetic_scenarios=settings.synthetic_scenarios,
        synthetic_trips_per_day=settings.synthetic_trips_per_day,
    )


def model_registry(settings: Settings) -> ModelRegistry:
    return ModelRegistry(
        tracking_uri=settings.mlflow_tracking_uri,
        cache_dir=str(H.models_cache(settings.home)),
        artifact_root=str(H.artifact_root(settings.home)),
        ui_url=settings.mlflow_ui_url,
    )


def metrics_db(settings: Settings) -> MetricsDB:
    return MetricsDB(url=settings.metrics_database_url)


def mailer(settings: Settings, recipients: str | None = None) -> Mailer:
    return Mailer(
        outbox_dir=str(settings.home / "outbox"),
        smtp_host=settings.smtp_host,
        smtp_port=settings.smtp_port,
        smtp_user=settings.smtp_user,
        smtp_password=dg.EnvVar("SMTP_PASSWORD") if settings.smtp_password_set else None,
        smtp_starttls=settings.smtp_starttls,
        sender=settings.alert_email_from,
        recipients=recipients or settings.alert_email_to,
    )


def ops_mailer(settings: Settings) -> Mailer:
    """The same transport for the platform's own alerts, to ``ALERT_EMAIL_TO_OPS`` (default:
    ``ALERT_EMAIL_TO``)."""
    return mailer(settings, recipients=settings.alert_email_to_ops)


def ops_policy(settings: Settings) -> OpsPolicy:
    return OpsPolicy(
        freshness_deadline=settings.freshness_deadline,
        freshness_window_days=settings.freshness_window_days,
        retrain_start_limit_seconds=settings.retrain_start_limit_seconds,
    )


def links(settings: Settings) -> Links:
    return Links(
        dagster_ui_url=settings.dagster_ui_url,
        grafana_url=settings.grafana_url,
        reports_url=settings.reports_url,
        mlflow_ui_url=settings.mlflow_ui_url,
    )


def serving_client(settings: Settings) -> ServingClient:
    return ServingClient(
        url=settings.serving_url,
        token=dg.EnvVar("SERVING_RELOAD_TOKEN") if settings.serving_token_set else None,
    )


def build_resources(settings: Settings) -> dict[str, object]:
    return {
        C.TRIP_SOURCE: trip_source(settings),
        C.PARQUET_IO: PartitionedParquetIOManager(base_dir=str(settings.home / "assets")),
        C.MODEL_REGISTRY: model_registry(settings),
        C.METRICS_DB: metrics_db(settings),
        C.REPORTS: ReportStore(directory=str(settings.home / "reports"), base_url=settings.reports_url),
        C.MAILER: mailer(settings),
        C.OPS_MAILER: ops_mailer(settings),
        C.OPS_POLICY: ops_policy(settings),
        C.LINKS: links(settings),
        C.SERVING: serving_client(settings),
    }
