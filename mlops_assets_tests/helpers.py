"""Small helpers shared by test modules (no fakes: real data, real MLflow store)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pandas as pd

from mlops_assets.data.sources import TripSource
from mlops_assets.specs import ModelSpec, load_specs
from mlops_assets.training import model as M
from mlops_assets.training.registry import ModelRegistry, RegisteredVersion


def default_spec() -> ModelSpec:
    return next(s for s in load_specs() if s.name == "green_taxi_duration")


def load_trips(spec: ModelSpec, data_dir: Path, start: str, end: str) -> pd.DataFrame:
    """Cleaned trips picked up in [start, end) (ISO dates), read from ``data_dir``."""
    frame, _, _ = TripSource(kind="local", data_dir=str(data_dir)).load_trips(
        taxi_type=spec.taxi_type,
        start=datetime.fromisoformat(start),
        end=datetime.fromisoformat(end),
        required=spec.feature_columns,
        filters=spec.filters,
    )
    return frame


def train_month(spec: ModelSpec, data_dir: Path, month: str) -> M.ModelBundle:
    """The spec's model trained on ``month`` (YYYY-MM) exactly as the duration_model asset does."""
    start = pd.Timestamp(month + "-01")
    end = start + pd.offsets.MonthBegin(1)
    frame = load_trips(spec, data_dir, str(start.date()), str(end.date()))
    train_rows, holdout_rows = M.split_by_time(frame, spec.training.train_fraction)
    return M.train(spec, train_rows, holdout_rows)


def register_champion(
    spec: ModelSpec, bundle: M.ModelBundle, registry: ModelRegistry | None = None
) -> RegisteredVersion:
    """Register ``bundle`` in the (default, per-test) MLflow store and make it champion."""
    registry = registry or ModelRegistry()
    registered = registry.register(
        bundle,
        artifact=spec.training.artifact,
        params={},
        tags={"source": "test", "spec": spec.name},
    )
    registry.set_champion(spec.name, registered.version)
    return registered


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
