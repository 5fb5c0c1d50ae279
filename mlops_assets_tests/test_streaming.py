"""A run holds one day at a time (issue 15): its memory is set by its largest day, not by
how many days it covers.

A single-run backfill across a month boundary runs through the real assets with the
project's IO manager, watched: every frame a day's output or input is made of is tracked
with a weak reference, and before each next day is computed (and after the last one) the
earlier days' frames must all be gone. A regression that keeps days around (a dict of the
run's outputs, a cache of inputs) fails here whatever the machine's speed or memory.
"""

from __future__ import annotations

import gc
import weakref

import dagster as dg
import pandas as pd

from mlops_assets import constants as C
from mlops_assets import resources as R
from mlops_assets.definitions import build_defs
from mlops_assets.lib.io import DayFrames, DayStream, PartitionedParquetIOManager
from mlops_assets.monitoring.store import DailyMetricsStore
from mlops_assets_tests.helpers import MONITORING, default_spec, failure_message

SPEC = default_spec()
WATCH: dict[str, dict] = {}  # asset -> {"refs": [...], "live": [...], "days": n}


def watch(name: str) -> dict:
    return WATCH.setdefault(name, {"refs": [], "live": [], "days": 0})


def live(record: dict) -> int:
    gc.collect()
    return sum(ref() is not None for ref in record["refs"])


class WatchedFrames(DayFrames):
    def __init__(self, paths, record: dict):
        super().__init__(paths)
        self._record = record

    def __getitem__(self, day: str) -> pd.DataFrame:
        self._record["live"].append(live(self._record))  # earlier days read must be gone
        frame = super().__getitem__(day)
        self._record["refs"].append(weakref.ref(frame))
        self._record["days"] += 1
        return frame


def watched(stream: DayStream, record: dict):
    items = stream.items()
    while True:
        record["live"].append(live(record))  # before the next day is computed
        try:
            day, frame = next(items)
        except StopIteration:
            return
        record["refs"].append(weakref.ref(frame))
        record["days"] += 1
        yield day, frame
        del frame


class WatchingIOManager(PartitionedParquetIOManager):
    """The project's IO manager, recording which of a run's day frames are still alive."""

    def handle_output(self, context, obj):
        if isinstance(obj, DayStream):
            obj = DayStream(obj.days, watched(obj, watch("out " + context.asset_key.to_user_string())))
        super().handle_output(context, obj)

    def load_input(self, context):
        days = super().load_input(context)  # (checks that every day is there)
        paths = {day: self.path_for(context.asset_key, day) for day in days}
        return WatchedFrames(paths, watch(f"in {context.asset_key.to_user_string()}"))


def test_a_backfill_holds_one_day_at_a_time(home, settings, resources):
    WATCH.clear()
    resources = {**resources, C.PARQUET_IO: WatchingIOManager(base_dir=str(settings.home / "assets"))}
    defs = build_defs([SPEC], resources)
    first, last = "2022-02-20", "2022-03-06"  # 15 days, two source months
    result = dg.materialize(
        list(defs.assets),
        selection=[dg.AssetKey([SPEC.name, n]) for n in MONITORING],
        resources=defs.resources,
        tags={"dagster/asset_partition_range_start": first, "dagster/asset_partition_range_end": last},
        raise_on_error=False,
    )
    assert result.success, failure_message(result)
    assert len([r.as_dict() for r in DailyMetricsStore(R.metrics_db(settings)).rows(SPEC.name)]) == 15

    outputs = {name: r for name, r in WATCH.items() if name.startswith("out ")}
    inputs = {name: r for name, r in WATCH.items() if name.startswith("in ")}
    # trips, predictions and drift_metrics stream their days; dummy_metrics reads drift_metrics'
    assert sorted(outputs) == sorted(
        f"out {SPEC.name}/{n}" for n in (C.TRIPS, C.PREDICTIONS, C.DRIFT_METRICS)
    )
    assert len(inputs) == 3
    for name, record in WATCH.items():
        assert record["days"] == 15, name
        # one check before each day and one after the last: no earlier day alive at any of them
        assert record["live"] and max(record["live"]) == 0, (name, record["live"])
