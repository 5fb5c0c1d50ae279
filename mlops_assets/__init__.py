"""mlops_assets: a trip-duration model's whole life as one Dagster code location.

Read top-down: ``specs`` (what a model is), ``data`` (trips), ``training`` (the model),
``monitoring`` (daily drift into ``dummy_metrics``), ``alerting`` (sensor, email, retrain),
and ``definitions`` (the one entrypoint that wires them together).
"""
