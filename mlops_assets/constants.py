"""Names used across the code location: asset names, groups, jobs, checks, tags.

An asset key is ``[<model spec name>, <asset name>]`` (``keys.py``); each model spec is its own
group.
"""

# Asset names (the last part of each asset key).
TRIPS = "trips"
DURATION_MODEL = "duration_model"
PREDICTIONS = "predictions"
DRIFT_METRICS = "drift_metrics"
DUMMY_METRICS = "dummy_metrics"
RETRAINED_MODEL = "retrained_model"
MONITORING_HISTORY = "monitoring_history"
CHAMPION_REVIEW = "champion_review"

# Jobs keep the original Airflow design's DAG names where they map.
TRAIN_JOB = "train_duration_model"
MONITORING_JOB = "metrics_backfill_to_postgres"
RETRAIN_JOB = "retrain_duration_model"
HISTORY_JOB = "draw_monitoring_history"
MONITORING_SCHEDULE = "daily_monitoring_schedule"

# The automation condition sensor of the monitoring_history assets (on by default).
HISTORY_SENSOR = "monitoring_history_automation"

# The ops domain's sensors: the platform watching itself (ops/).
RUN_FAILURE_SENSOR = "ops_run_watch"
FRESHNESS_SENSOR = "ops_freshness_watch"
OPS_WATCH_SENSOR = "ops_watch"

# Asset checks.
CHECK_TRIPS_SCHEMA = "canonical_schema"
CHECK_TRIPS_NOT_EMPTY = "rows_on_weekdays"
CHECK_TRIPS_DURATION = "duration_within_bounds"
CHECK_MODEL_RMSE = "holdout_rmse_beats_mean"
CHECK_PREDICTION_DRIFT = "prediction_drift_below_threshold"
CHECK_MODEL_QUALITY = "model_quality_within_rules"
# The ops domain's freshness check on drift_metrics and dummy_metrics (ops/checks.py).
CHECK_FRESHNESS = "monitored_in_time"

# Resource keys.
TRIP_SOURCE = "trip_source"
PARQUET_IO = "parquet_io_manager"
MODEL_REGISTRY = "model_registry"
METRICS_DB = "metrics_db"
REPORTS = "reports"
MAILER = "mailer"
OPS_MAILER = "ops_mailer"  # the same transport, to ALERT_EMAIL_TO_OPS
OPS_POLICY = "ops_policy"
LINKS = "links"
SERVING = "serving"

# Kinds shown as badges in the Dagster UI.
KIND_PANDAS = "pandas"
KIND_PARQUET = "parquet"
KIND_SKLEARN = "scikitlearn"
