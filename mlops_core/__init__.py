"""mlops_core: what training, monitoring and the prediction service share. Imports no Dagster.

Read top-down: ``schema`` (the canonical trip schema and cleaning), ``features`` (a model's
``Features`` and the one feature path), ``specs`` (model spec YAML), ``bundle`` (a trained
model as files), ``registry`` (MLflow: register, alias, load), ``text`` and ``home`` (secret
redaction, setting parsers, default paths). The code location (``mlops_assets``) and the
service (``serving``) both import it; it imports neither.
"""
