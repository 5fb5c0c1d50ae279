"""Storage of daily-partitioned frames: one parquet file per asset partition, one day at a time.

A partitioned asset's input is a ``DayFrames``: a read-only mapping of partition key →
``DataFrame`` that reads a day's file when the day is looked up and keeps nothing, so an
asset body looks days up one by one and a backfill of any length never holds its range in
memory. Its output is a ``DayStream`` (the days computed one at a time while this IO manager
writes them: each day is written, then dropped, before the next is computed) or, for small
values, a plain ``dict``. Either way a one-day run and a month-long single-run backfill look
the same to the asset body.

Files are written atomically (temp file + rename) under ``<base_dir>/<key path>/``
(``MLOPS_HOME/assets`` as the code location wires it).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path

import dagster as dg
import pandas as pd


class MissingPartitionError(RuntimeError):
    pass


class DayFrames(Mapping):
    """Days of a partitioned asset, each read from its parquet file when it is looked up
    (and not kept: look a day up once)."""

    def __init__(self, paths: Mapping[str, Path]):
        self._paths = dict(paths)

    def __getitem__(self, day: str) -> pd.DataFrame:
        return pd.read_parquet(self._paths[day])

    def __iter__(self) -> Iterator[str]:
        return iter(self._paths)

    def __len__(self) -> int:
        return len(self._paths)


class DayStream:
    """An asset's output computed one day at a time: ``items`` yields ``(day, frame)`` pairs
    for exactly ``days``, and the IO manager writes each before asking for the next. The
    computation runs while Dagster stores the output, so what it records (metadata, logs)
    lands before the materializations are logged; an error in it fails the step as an error
    while handling the output, with the original error as its cause."""

    def __init__(self, days: Iterable[str], items: Iterable[tuple[str, pd.DataFrame]]):
        self.days = list(days)
        self._items = items

    @classmethod
    def of(cls, days: Iterable[str], compute: Callable[[str], pd.DataFrame]) -> DayStream:
        """``compute(day)`` for each day, in order."""
        days = list(days)
        return cls(days, ((day, compute(day)) for day in days))

    def items(self) -> Iterator[tuple[str, pd.DataFrame]]:
        return iter(self._items)


class PartitionedParquetIOManager(dg.ConfigurableIOManager):
    base_dir: str

    def path_for(self, asset_key: dg.AssetKey, partition_key: str) -> Path:
        return Path(self.base_dir).joinpath(*asset_key.path) / f"{partition_key}.parquet"

    def handle_output(self, context: dg.OutputContext, obj: dict[str, pd.DataFrame] | DayStream) -> None:
        if obj is None:
            return
        name = context.asset_key.to_user_string()
        if not isinstance(obj, dict | DayStream):
            raise TypeError(f"{name}: expected a dict of partition -> DataFrame or a DayStream")
        expected = set(context.asset_partition_keys)
        announced = set(obj.days) if isinstance(obj, DayStream) else set(obj)
        if announced != expected:
            missing = sorted(expected - announced)[:5]
            extra = sorted(announced - expected)[:5]
            raise ValueError(
                f"{name}: output partitions do not match the run (missing {missing}, unexpected {extra})"
            )
        written: set[str] = set()
        for key, frame in obj.items():
            if key not in expected or key in written:
                raise ValueError(
                    f"{name}: partition {key} produced {'twice' if key in written else 'unasked'}"
                )
            self._write(self.path_for(context.asset_key, key), frame)
            del frame  # dropped before the next day is computed
            written.add(key)
        if written != expected:
            raise ValueError(f"{name}: no frame was produced for {sorted(expected - written)[:5]}")

    @staticmethod
    def _write(path: Path, frame: pd.DataFrame) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
        os.close(fd)
        try:
            frame.to_parquet(tmp, index=False)
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)

    def load_input(self, context: dg.InputContext) -> DayFrames:
        paths = {}
        for key in context.asset_partition_keys:
            path = self.path_for(context.asset_key, key)
            if not path.is_file():
                raise MissingPartitionError(
                    f"{context.asset_key.to_user_string()} partition {key} has not been "
                    f"materialized (no {path}); materialize it first"
                )
            paths[key] = path
        return DayFrames(paths)
