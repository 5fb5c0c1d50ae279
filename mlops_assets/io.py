"""Storage of daily-partitioned frames: one parquet file per asset partition.

A partitioned asset's value is a ``dict`` of partition key → ``DataFrame``, for one partition
as for a month-long single-run backfill, so an asset body never needs to care which it got.
Files are written atomically (temp file + rename) under ``<base_dir>/<key path>/``
(``MLOPS_HOME/assets`` as the code location wires it).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import dagster as dg
import pandas as pd


class MissingPartitionError(RuntimeError):
    pass


class PartitionedParquetIOManager(dg.ConfigurableIOManager):
    base_dir: str

    def path_for(self, asset_key: dg.AssetKey, partition_key: str) -> Path:
        return Path(self.base_dir).joinpath(*asset_key.path) / f"{partition_key}.parquet"

    def handle_output(self, context: dg.OutputContext, obj: dict[str, pd.DataFrame]) -> None:
        if obj is None:
            return
        if not isinstance(obj, dict):
            raise TypeError(
                f"{context.asset_key.to_user_string()}: expected a dict of partition -> DataFrame"
            )
        expected = set(context.asset_partition_keys)
        if set(obj) != expected:
            missing = sorted(expected - set(obj))[:5]
            extra = sorted(set(obj) - expected)[:5]
            raise ValueError(
                f"{context.asset_key.to_user_string()}: output partitions do not match the run "
                f"(missing {missing}, unexpected {extra})"
            )
        for key, frame in obj.items():
            path = self.path_for(context.asset_key, key)
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
            os.close(fd)
            try:
                frame.to_parquet(tmp, index=False)
                os.replace(tmp, path)
            finally:
                if os.path.exists(tmp):
                    os.unlink(tmp)

    def load_input(self, context: dg.InputContext) -> dict[str, pd.DataFrame]:
        out = {}
        for key in context.asset_partition_keys:
            path = self.path_for(context.asset_key, key)
            if not path.is_file():
                raise MissingPartitionError(
                    f"{context.asset_key.to_user_string()} partition {key} has not been "
                    f"materialized (no {path}); materialize it first"
                )
            out[key] = pd.read_parquet(path)
        return out
