"""The code location's one entrypoint: ``defs``.

The environment is read here, once (``Settings.from_env``); the specs get the default drift
threshold as a value, and the resources their paths, URLs and ``dg.EnvVar`` secrets
(``resources.py``). Each domain builds its own definitions for every model spec (one set of
assets, checks, sensors and schedules per spec file) and this module merges them, as
dagster-open-platform merges its ``defs/<domain>/definitions.py``:

* ``data``: the daily ``trips``;
* ``training``: ``duration_model`` (monthly), ``retrained_model``, their jobs and schedule;
* ``monitoring``: predictions → drift_metrics → dummy_metrics, the daily job and schedule,
  ``monitoring_history``;
* ``alerting``: the alert sensors;
* ``ops``: the platform watching itself (failed runs, days not monitored in time, retrains
  that never started), emailed through the same mailer.

Tests call ``build_defs`` with their own specs and resources.
"""

from __future__ import annotations

import warnings

import dagster as dg

from mlops_assets.alerting import definitions as alerting
from mlops_assets.data import definitions as data
from mlops_assets.monitoring import definitions as monitoring
from mlops_assets.ops import definitions as ops
from mlops_assets.resources import build_resources
from mlops_assets.settings import Settings
from mlops_assets.training import definitions as training
from mlops_core.specs import ModelSpec

# BackfillPolicy is marked beta in Dagster 1.13; single-run backfills are what we rely on.
warnings.filterwarnings("ignore", category=dg.BetaWarning)

DOMAINS = (data, training, monitoring, alerting, ops)


def build_defs(specs: list[ModelSpec], resources: dict[str, object]) -> dg.Definitions:
    names = [s.name for s in specs]
    if len(set(names)) != len(names):
        raise ValueError(f"two model specs share a name: {names}")
    return dg.Definitions.merge(
        *(domain.build_definitions(specs) for domain in DOMAINS),
        dg.Definitions(
            resources=resources,
            # Steps run one after another in the run's process: the chain trips → predictions →
            # drift → dummy_metrics is sequential, and a process per step would add seconds of
            # imports to each (see BENCHMARKS.md). Runs are still isolated from each other.
            executor=dg.in_process_executor,
        ),
    )


def defs_from_settings(settings: Settings) -> dg.Definitions:
    specs = settings.load_specs()
    return build_defs(specs, build_resources(settings))


defs = defs_from_settings(Settings.from_env())
