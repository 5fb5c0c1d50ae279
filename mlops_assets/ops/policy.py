"""The ``ops_policy`` resource: the limits the ops sensors judge by, from ``Settings``
(``FRESHNESS_DEADLINE``, ``FRESHNESS_WINDOW_DAYS``, ``RETRAIN_START_LIMIT_SECONDS``). Values, so
the Dagster UI shows them under Deployment → Resources."""

from __future__ import annotations

from datetime import time, timedelta

import dagster as dg

from mlops_core.text import parse_clock


class OpsPolicy(dg.ConfigurableResource):
    freshness_deadline: str = "06:00"  # UTC time of day by which yesterday must be monitored
    freshness_window_days: int = 7  # days older than this are never judged (replays stay quiet)
    retrain_start_limit_seconds: int = 900  # a requested retrain not started by then is reported

    def deadline(self) -> time:
        return parse_clock("FRESHNESS_DEADLINE", self.freshness_deadline)

    def window(self) -> timedelta:
        return timedelta(days=self.freshness_window_days)

    def retrain_start_limit(self) -> timedelta:
        return timedelta(seconds=self.retrain_start_limit_seconds)
