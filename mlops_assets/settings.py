"""The code location's settings: the environment, read once, into one ``Settings`` value.

``Settings.from_env()`` is the only place the code location reads the environment; it runs
where the ``Definitions`` are built (``definitions.py``) and in ``make demo``. Everything
below it (resources, specs, assets, sensors) gets concrete values, so the Dagster UI shows
what is configured, and a test builds ``Settings.for_home(tmp_path, ...)`` instead of setting
variables. Secrets are not values here: only whether they are set; the resources read them
through ``dg.EnvVar`` (the UI shows the variable's name). Every variable is documented in the
README and in ``.env.example``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from mlops_core import home as H
from mlops_core.specs import DEFAULT_DRIFT_THRESHOLD, PACKAGED_SPECS_DIR, ModelSpec, load_specs
from mlops_core.text import ConfigError, parse_clock, parse_count, parse_flag, parse_number, parse_port

TRIP_SOURCES = ("auto", "tlc", "local", "synthetic")
DEFAULT_DAGSTER_UI_URL = "http://localhost:3000"
DEFAULT_SYNTHETIC_TRIPS_PER_DAY = 2200  # about the real green taxi files' trips a day


@dataclass(frozen=True)
class Settings:
    home: Path  # MLOPS_HOME: caches, asset files, model bundles, SQLite stores, the outbox
    metrics_database_url: str
    mlflow_tracking_uri: str
    trip_source: str = "auto"  # auto | tlc | local | synthetic
    trip_data_dir: Path | None = None
    synthetic_scenarios: bool = True  # the synthetic source's scenario calendar (storm, new district)
    synthetic_trips_per_day: int = DEFAULT_SYNTHETIC_TRIPS_PER_DAY  # green's volume; yellow is ~100,000
    drift_threshold: float = DEFAULT_DRIFT_THRESHOLD
    # MONITORING_BACKFILL_DAYS_PER_RUN: a backfill of the daily assets is split into runs of at
    # most this many days, run in parallel by the run queue; None: one run (a spec may say)
    backfill_days_per_run: int | None = None
    specs_dir: Path = PACKAGED_SPECS_DIR
    smtp_host: str | None = None
    smtp_port: int | None = None
    smtp_user: str | None = None
    smtp_password_set: bool = False  # SMTP_PASSWORD is read by the mailer through dg.EnvVar
    smtp_starttls: bool = False
    alert_email_from: str | None = None
    alert_email_to: str | None = None
    # The platform's own alerts (ops/): their recipients (default: alert_email_to), the time of
    # day (UTC) by which yesterday must be monitored, how far back days are judged (older days
    # never raise a freshness alarm: replays of history stay quiet), and how long a requested
    # retrain may wait to start.
    alert_email_to_ops: str | None = None
    freshness_deadline: str = "06:00"
    freshness_window_days: int = 7
    retrain_start_limit_seconds: int = 900
    serving_url: str | None = None
    serving_token_set: bool = False  # SERVING_RELOAD_TOKEN, read through dg.EnvVar
    dagster_ui_url: str = DEFAULT_DAGSTER_UI_URL
    grafana_url: str | None = None
    # Links in asset metadata: where MLOPS_HOME/reports is served over HTTP (the daily reports
    # and the history chart become clickable), and the MLflow UI (default: the tracking URI
    # when it is http(s)).
    reports_url: str | None = None
    mlflow_ui_url: str | None = None

    def __post_init__(self):
        if self.trip_source not in TRIP_SOURCES:
            raise ConfigError(f"TRIP_SOURCE must be auto, tlc, local or synthetic; got {self.trip_source!r}")
        if self.backfill_days_per_run is not None and not (
            isinstance(self.backfill_days_per_run, int) and self.backfill_days_per_run >= 1
        ):
            raise ConfigError(
                "backfill_days_per_run (MONITORING_BACKFILL_DAYS_PER_RUN) must be a whole number "
                f"of at least 1 or None; got {self.backfill_days_per_run!r}"
            )
        parse_clock("FRESHNESS_DEADLINE", self.freshness_deadline)

    @classmethod
    def for_home(cls, home: Path | str, **values) -> Settings:
        """Settings with every store inside ``home`` (the defaults), updated with ``values``."""
        home = H.resolve_home(str(home))
        defaults = {
            "metrics_database_url": H.default_metrics_url(home),
            "mlflow_tracking_uri": H.default_tracking_uri(home),
        }
        return cls(home=home, **{**defaults, **values})

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ

        def text(name: str) -> str | None:
            value = (env.get(name) or "").strip()
            return value or None

        data_dir = text("TRIP_DATA_DIR")
        values = {
            "trip_source": text("TRIP_SOURCE") or "auto",
            "trip_data_dir": Path(data_dir).expanduser().resolve() if data_dir else None,
            "synthetic_scenarios": parse_flag(env.get("SYNTHETIC_SCENARIOS"), default=True),
            "synthetic_trips_per_day": parse_count(
                "SYNTHETIC_TRIPS_PER_DAY", env.get("SYNTHETIC_TRIPS_PER_DAY")
            )
            or DEFAULT_SYNTHETIC_TRIPS_PER_DAY,
            "drift_threshold": parse_number(
                "DRIFT_THRESHOLD", env.get("DRIFT_THRESHOLD"), DEFAULT_DRIFT_THRESHOLD, positive=True
            ),
            "backfill_days_per_run": parse_count(
                "MONITORING_BACKFILL_DAYS_PER_RUN", env.get("MONITORING_BACKFILL_DAYS_PER_RUN")
            ),
            "specs_dir": Path(text("MODEL_SPECS_DIR") or PACKAGED_SPECS_DIR),
            "smtp_host": text("SMTP_HOST"),
            "smtp_port": parse_port("SMTP_PORT", env.get("SMTP_PORT")),
            "smtp_user": text("SMTP_USER"),
            "smtp_password_set": bool(env.get("SMTP_PASSWORD")),
            "smtp_starttls": parse_flag(env.get("SMTP_STARTTLS")),
            "alert_email_from": text("ALERT_EMAIL_FROM"),
            "alert_email_to": text("ALERT_EMAIL_TO"),
            "alert_email_to_ops": text("ALERT_EMAIL_TO_OPS"),
            "freshness_deadline": text("FRESHNESS_DEADLINE") or "06:00",
            "freshness_window_days": parse_count("FRESHNESS_WINDOW_DAYS", env.get("FRESHNESS_WINDOW_DAYS"))
            or 7,
            "retrain_start_limit_seconds": parse_count(
                "RETRAIN_START_LIMIT_SECONDS", env.get("RETRAIN_START_LIMIT_SECONDS")
            )
            or 900,
            "serving_url": text("SERVING_URL"),
            "serving_token_set": bool(env.get("SERVING_RELOAD_TOKEN")),
            "dagster_ui_url": text("DAGSTER_UI_URL") or DEFAULT_DAGSTER_UI_URL,
            "grafana_url": text("GRAFANA_URL"),
            "reports_url": text("REPORTS_URL"),
            "mlflow_ui_url": text("MLFLOW_UI_URL"),
        }
        for name, key in (
            ("METRICS_DATABASE_URL", "metrics_database_url"),
            ("MLFLOW_TRACKING_URI", "mlflow_tracking_uri"),
        ):
            if text(name):
                values[key] = text(name)
        return cls.for_home(H.resolve_home(text("MLOPS_HOME")), **values)

    def load_specs(self) -> list[ModelSpec]:
        """The model specs in ``specs_dir``, with this deployment's defaults for what a spec
        file does not say (the drift threshold, the days per backfill run)."""
        return load_specs(
            self.specs_dir,
            default_drift_threshold=self.drift_threshold,
            default_backfill_days_per_run=self.backfill_days_per_run,
        )

    @property
    def trip_source_kind(self) -> str:
        """``auto`` made concrete: the folder when ``TRIP_DATA_DIR`` is set, else the TLC."""
        if self.trip_source == "auto":
            return "local" if self.trip_data_dir else "tlc"
        return self.trip_source
