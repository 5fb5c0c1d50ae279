"""The partitions every model spec shares, declared once.

All specs share one daily and one monthly definition so that the shared jobs
(``train_duration_model``, ``metrics_backfill_to_postgres``) can cover every spec.
The first partition is ``PARTITIONS_START``; a spec's training month must not be earlier.
"""

import dagster as dg

from mlops_core.specs import PARTITIONS_START, ModelSpec

daily_partitions = dg.DailyPartitionsDefinition(start_date=PARTITIONS_START)
monthly_partitions = dg.MonthlyPartitionsDefinition(start_date=PARTITIONS_START)


def daily_backfill_policy(spec: ModelSpec) -> dg.BackfillPolicy:
    """The backfill policy of a spec's daily chain (trips, predictions, drift_metrics,
    dummy_metrics): all four take it from here, so a backfill's runs cover the same days for
    each of them and the daemon puts the whole chain of a chunk of days in one run.

    One run for any range (``single_run``) unless ``monitoring.backfill_days_per_run`` (or
    MONITORING_BACKFILL_DAYS_PER_RUN) is N: then runs of at most N consecutive days, which the
    instance's run queue executes in parallel up to its limits (docs/scale-out.md)."""
    days = spec.monitoring.backfill_days_per_run
    if days is None:
        return dg.BackfillPolicy.single_run()
    return dg.BackfillPolicy.multi_run(max_partitions_per_run=days)
