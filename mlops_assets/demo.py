"""``make demo``: the platform's main job on embedded defaults, with progress and a summary.

Runs on a persistent Dagster instance in ``DAGSTER_HOME`` (default ``MLOPS_HOME/dagster_home``),
so every run it makes shows up afterwards in ``make dev``. Trip data comes from
``TRIP_DATA_DIR`` when set, else from the TLC; when the TLC cannot be reached it says so and
falls back to the synthetic generator (``TRIP_SOURCE=synthetic``), clearly labelled.
"""

from __future__ import annotations

import logging
import os
import sys
import time
import warnings
from collections.abc import Sequence
from pathlib import Path

import dagster as dg
import pandas as pd

from mlops_assets import constants as C
from mlops_assets import settings
from mlops_assets.data.sources import TripDataError, TripSource
from mlops_assets.definitions import build_defs
from mlops_assets.specs import ModelSpec, load_specs

QUIET = {"loggers": {"console": {"config": {"log_level": "ERROR"}}}}


def say(message: str = "") -> None:
    print(message, flush=True)


def table(rows: Sequence[dict], columns: Sequence[str] | None = None) -> str:
    """A plain fixed-width table (no extra dependency)."""
    if not rows:
        return "(none)"
    columns = list(columns or rows[0].keys())
    cells = [[("" if r.get(c) is None else str(r.get(c))) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    line = "  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True))
    rule = "  ".join("-" * w for w in widths)
    body = ["  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)) for row in cells]
    return "\n".join([line, rule, *body])


def instance() -> dg.DagsterInstance:
    home = Path(os.environ.get("DAGSTER_HOME") or settings.mlops_home() / "dagster_home").resolve()
    home.mkdir(parents=True, exist_ok=True)
    config = home / "dagster.yaml"
    if not config.exists():
        config.write_text("telemetry:\n  enabled: false\nnux:\n  enabled: false\n")
    os.environ["DAGSTER_HOME"] = str(home)
    return dg.DagsterInstance.get()


def choose_trip_source(spec: ModelSpec) -> str:
    """Describe the trip source, falling back to synthetic data when the TLC is unreachable."""
    source = TripSource()
    if os.environ.get("TRIP_SOURCE") or settings.trip_data_dir():
        return source.describe()
    try:
        source.files().fetch(spec.taxi_type, spec.training.month)
    except TripDataError as exc:
        say(f"! {exc}")
        say(
            "! Falling back to SYNTHETIC trips (TRIP_SOURCE=synthetic): figures below are not real."
        )
        os.environ["TRIP_SOURCE"] = "synthetic"
        return TripSource().describe()
    return source.describe()


class Demo:
    def __init__(self, spec: ModelSpec):
        self.spec = spec
        self.defs = build_defs([spec])
        self.assets = list(self.defs.assets)
        self.instance = instance()
        self.step = 0

    def key(self, name: str) -> dg.AssetKey:
        return dg.AssetKey([self.spec.name, name])

    def run(
        self,
        label: str,
        names: Sequence[str],
        *,
        partition: str | None = None,
        first: str | None = None,
        last: str | None = None,
    ) -> dg.ExecuteInProcessResult:
        """Materialize ``names`` for one partition or a range, in one run; print progress."""
        self.step += 1
        span = partition or f"{first}..{last}"
        say(f"[{self.step}] {label} ({', '.join(names)}; {span}) ...")
        tags = {}
        if first is not None:
            tags = {
                "dagster/asset_partition_range_start": first,
                "dagster/asset_partition_range_end": last,
            }
        started = time.perf_counter()
        result = dg.materialize(
            self.assets,
            selection=[self.key(n) for n in names],
            resources=self.defs.resources,
            instance=self.instance,
            partition_key=partition,
            tags={**tags, "mlops/demo": "true"},
            run_config=QUIET,
            raise_on_error=False,
        )
        if not result.success:
            say(f"    FAILED after {time.perf_counter() - started:.1f} s (run {result.run_id}):")
            for event in result.all_events:
                if event.is_step_failure:
                    error = event.step_failure_data.error
                    while error is not None and error.cause is not None:
                        error = error.cause
                    say(f"    {error.message.strip() if error else event.message}")
            raise SystemExit(1)
        say(f"    done in {time.perf_counter() - started:.1f} s (run {result.run_id[:8]})")
        return result

    @staticmethod
    def metadata(
        result: dg.ExecuteInProcessResult, key: dg.AssetKey
    ) -> list[tuple[str | None, dict]]:
        out = []
        for event in result.get_asset_materialization_events():
            if event.asset_key == key:
                mat = event.event_specific_data.materialization
                out.append((mat.partition, {k: v.value for k, v in mat.metadata.items()}))
        return out

    def train(self) -> dict:
        month = self.spec.training.month
        start = pd.Timestamp(month + "-01")
        end = start + pd.offsets.MonthEnd(0)
        trips = self.run(
            f"Load the trips of {month}", [C.TRIPS], first=str(start.date()), last=str(end.date())
        )
        per_day = self.metadata(trips, self.key(C.TRIPS))
        total = sum(md["rows"] for _, md in per_day)
        say(f"    {total:,} trips over {len(per_day)} days")
        result = self.run(
            f"Train the duration model on {month}", [C.DURATION_MODEL], partition=str(start.date())
        )
        ((_, md),) = self.metadata(result, self.key(C.DURATION_MODEL))
        return md


def main() -> int:
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore")
    specs = load_specs()
    spec = next((s for s in specs if s.name == "green_taxi_duration"), specs[0])
    say(f"mlops_assets demo: model spec '{spec.name}' ({spec.source_file})")
    say(f"MLOPS_HOME   {settings.mlops_home()}")
    say(f"trip data    {choose_trip_source(spec)}")
    say(f"MLflow       {settings.mlflow_tracking_uri()}")
    say()
    demo = Demo(spec)
    model = demo.train()
    say()
    say("Summary")
    say(
        table(
            [
                {
                    "model": spec.name,
                    "version": model["model_version"],
                    "trained on": model["training_window"],
                    "holdout RMSE": f"{model['holdout_rmse']:.3f}",
                    "holdout MAE": f"{model['holdout_mae']:.3f}",
                    "mean-predictor RMSE": f"{model['mean_baseline_rmse']:.3f}",
                    "train/holdout rows": f"{model['n_train']}/{model['n_holdout']}",
                }
            ]
        )
    )
    say()
    say(f"artifact     {model['artifact']}")
    say(
        f"Dagster      runs are in {os.environ['DAGSTER_HOME']}: `make dev`, then http://localhost:3000"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
