"""Small helpers shared by test modules (no fakes: real data, real MLflow store)."""

from __future__ import annotations

import contextlib
import sys
from datetime import datetime
from pathlib import Path

import pandas as pd

from mlops_assets import constants as C
from mlops_assets.data.sources import TripSource
from mlops_assets.training import model as M
from mlops_assets.training.store import TimelineStore
from mlops_core.registry import RegisteredVersion, RegistryOps
from mlops_core.specs import DEFAULT_DRIFT_THRESHOLD, ModelSpec, load_specs

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent  # the venv's console scripts (dagster, gunicorn, ...)
ARTIFACTS = REPO / "test-artifacts"  # screenshots and logs a person looks at after a run
MONITORING = [C.TRIPS, C.PREDICTIONS, C.DRIFT_METRICS, C.DUMMY_METRICS]


def default_spec(drift_threshold: float = DEFAULT_DRIFT_THRESHOLD) -> ModelSpec:
    """The packaged default spec, loaded with ``drift_threshold`` as the default threshold
    (what ``DRIFT_THRESHOLD`` sets for the code location)."""
    specs = load_specs(default_drift_threshold=drift_threshold)
    return next(s for s in specs if s.name == "green_taxi_duration")


def spec_with_rules(rules: list[dict] | None = None, **retraining) -> ModelSpec:
    """The default spec with other alert rules (None: its own) and retraining settings."""
    raw = default_spec().model_dump(mode="json", exclude={"source_file"})
    if rules is not None:
        raw["monitoring"]["rules"] = rules
    raw["retraining"].update(retraining)
    return ModelSpec.model_validate(raw)


def retraining_at_once() -> ModelSpec:
    """The default spec whose retrain rules retrain at once (the trailing window of the latest
    breach day, no waiting for data after the change): for tests about something else than
    the retraining policy, which has its own."""
    raw = default_spec().model_dump(mode="json", exclude={"source_file"})
    rules = raw["monitoring"]["rules"]
    for rule in rules:
        if rule["retrain"]:
            rule["retrain"] = "at_once"
    return spec_with_rules(rules)


def load_trips(spec: ModelSpec, data_dir: Path, start: str, end: str) -> pd.DataFrame:
    """Cleaned trips picked up in [start, end) (ISO dates), read from ``data_dir``."""
    source = TripSource(kind="local", data_dir=str(data_dir))
    return source.trips_for(spec, datetime.fromisoformat(start), datetime.fromisoformat(end))[0]


def train_month(spec: ModelSpec, data_dir: Path, month: str) -> M.ModelBundle:
    """The spec's model trained on ``month`` (YYYY-MM) exactly as the duration_model asset does."""
    start = pd.Timestamp(month + "-01")
    end = start + pd.offsets.MonthBegin(1)
    return M.train_on_month(spec, load_trips(spec, data_dir, str(start.date()), str(end.date())))[0]


def register_champion(spec: ModelSpec, bundle: M.ModelBundle, registry: RegistryOps) -> RegisteredVersion:
    """Register ``bundle`` in ``registry`` (the test's MLflow store) and make it champion."""
    registered = registry.register(
        bundle,
        artifact=spec.training.artifact,
        params={},
        tags={"source": "test", "spec": spec.name},
    )
    registry.set_champion(spec.name, registered.version)
    return registered


def train_through_assets(defs, spec: ModelSpec, month: str):
    """Materialize ``trips`` for every day of ``month`` (one run), then ``duration_model``
    for it; returns the model's ``dg.materialize`` result (the trips run must succeed)."""
    import dagster as dg

    from mlops_assets import constants as C

    start = pd.Timestamp(month + "-01")
    tags = {
        "dagster/asset_partition_range_start": str(start.date()),
        "dagster/asset_partition_range_end": str((start + pd.offsets.MonthEnd(0)).date()),
    }
    assets = list(defs.assets)
    trips = dg.AssetKey([spec.name, C.TRIPS])
    assert dg.materialize(assets, selection=[trips], resources=defs.resources, tags=tags).success
    model = dg.AssetKey([spec.name, C.DURATION_MODEL])
    return dg.materialize(
        assets, selection=[model], resources=defs.resources, partition_key=str(start.date())
    )


def failure_message(result) -> str:
    """All messages of a failed ``dg.materialize`` result's error chain, joined."""
    messages = []
    for event in result.all_events:
        if event.is_step_failure:
            error = event.step_failure_data.error
            while error is not None:
                messages.append(error.message)
                error = error.cause
    return "\n".join(messages)


def copy_timeline(spec_name: str, source_url: str, target_url: str) -> None:
    """Copy the model timeline of the metrics DB at ``source_url`` (the test's MLOPS_HOME) into
    the metrics DB at ``target_url``: the same model is then in effect there on the same days."""
    from mlops_assets.lib.storage.engine import MetricsDB

    target = MetricsDB(url=target_url)
    for entry in TimelineStore(MetricsDB(url=source_url)).entries(spec_name):
        TimelineStore(target).record(
            spec_name,
            entry["model_version"],
            entry["effective_from"],
            reason=entry["reason"],
            holdout_rmse=entry["holdout_rmse"],
            window_end=entry["window_end"],
        )


def scrambled_copy(trip_data_dir: Path, folder: Path) -> Path:
    """A copy of the real files in ``folder`` where 2022-01's trip distances are shuffled among
    the trips of 16-31 January (its holdout): a scrambled meter column, so a model of that
    month learns minutes per mile on the first half and loses to the mean on the second."""
    import shutil

    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    shutil.copytree(trip_data_dir, folder, ignore=shutil.ignore_patterns("*.csv", "*.md", "SHA256SUMS"))
    path = folder / "green_tripdata_2022-01.parquet"
    table = pq.read_table(path)
    late = pc.greater_equal(
        table.column("lpep_pickup_datetime"), pa.scalar(datetime(2022, 1, 16), pa.timestamp("us"))
    )
    rows = np.flatnonzero(late.to_numpy(zero_copy_only=False))
    distance = table.column("trip_distance").to_numpy().copy()
    distance[rows] = np.random.default_rng(0).permutation(distance[rows])
    index = table.column_names.index("trip_distance")
    pq.write_table(table.set_column(index, "trip_distance", pa.array(distance)), path)
    return folder


CHROMIUM = "/usr/bin/chromium"


@contextlib.contextmanager
def chromium():
    """Debian's chromium through Playwright (its own browser download does not work here).

    Without chromium the test is skipped, except where ``MLOPS_REQUIRE_BROWSER=1`` (CI sets it
    and .ci/run installs chromium): there the test fails instead, so CI always runs it."""
    import os

    import pytest
    from playwright.sync_api import sync_playwright

    if not os.path.exists(CHROMIUM):
        reason = f"{CHROMIUM} is not installed (apt-get install -y chromium; .ci/run does this)"
        if os.environ.get("MLOPS_REQUIRE_BROWSER") == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        try:
            yield browser
        finally:
            browser.close()
