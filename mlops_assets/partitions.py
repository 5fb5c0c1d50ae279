"""The partitions every model spec shares, declared once.

All specs share one daily and one monthly definition so that the shared jobs
(``train_duration_model``, ``metrics_backfill_to_postgres``) can cover every spec.
The first partition is ``PARTITIONS_START``; a spec's training month must not be earlier.
"""

import dagster as dg

from mlops_core.specs import PARTITIONS_START

daily_partitions = dg.DailyPartitionsDefinition(start_date=PARTITIONS_START)
monthly_partitions = dg.MonthlyPartitionsDefinition(start_date=PARTITIONS_START)
