"""Model specs: one small YAML file per model, validated into a ``ModelSpec``.

A spec names the taxi type, the features, the target, the row filters, the training month,
the drift threshold and the retraining window. ``definitions.py`` builds one full set of
assets, checks, sensors and schedules per spec, so adding a YAML file adds a model.
The packaged specs live in ``mlops_assets/model_specs/``; which folder is read (``MODEL_SPECS_DIR``)
and the default drift threshold (``DRIFT_THRESHOLD``) are settings, passed in as values by the
code location and the prediction service.
"""

from __future__ import annotations

import re
from datetime import date
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from mlops_core.features import Features

# The packaged specs: beside this package in the same install (site-packages or the checkout).
PACKAGED_SPECS_DIR = Path(__file__).resolve().parents[1] / "mlops_assets" / "model_specs"
# The first day of the shared partitions; a spec's training month must not be earlier.
PARTITIONS_START = "2021-01-01"
FIRST_MONTH = PARTITIONS_START[:7]
DEFAULT_DRIFT_THRESHOLD = 0.20
NAME_PATTERN = re.compile(r"^[a-z][a-z0-9_]{0,62}$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Bounds(_Strict):
    """Inclusive bounds on a numeric column; either side may be open."""

    min: float | None = None
    max: float | None = None

    @model_validator(mode="after")
    def _ordered(self) -> Bounds:
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min ({self.min}) is greater than max ({self.max})")
        return self


class Training(_Strict):
    month: str = Field(description="YYYY-MM: the month the first model is trained on")
    train_fraction: float = Field(0.5, gt=0.0, lt=1.0)
    algorithm: Literal["linear_regression", "ridge", "lasso"] = "linear_regression"
    params: dict[str, float | int | bool | str] = Field(default_factory=dict)
    artifact: str = "lin_reg.bin"

    @field_validator("month")
    @classmethod
    def _month(cls, value: str) -> str:
        if not re.fullmatch(r"\d{4}-\d{2}", value):
            raise ValueError(f"training month must look like 2022-01, got {value!r}")
        date.fromisoformat(value + "-01")
        if value < FIRST_MONTH:
            raise ValueError(f"training month {value} is before the first partition ({FIRST_MONTH})")
        return value


class Monitoring(_Strict):
    # Filled in by ``load_spec`` from the default threshold (DRIFT_THRESHOLD) when the file
    # does not say; a spec built in code gets 0.20.
    drift_threshold: float = Field(DEFAULT_DRIFT_THRESHOLD, gt=0.0)


class Retraining(_Strict):
    window_days: int = Field(28, ge=2, le=366)
    holdout_days: int = Field(7, ge=1)
    min_rows: int = Field(5000, ge=10)

    @model_validator(mode="after")
    def _holdout_inside_window(self) -> Retraining:
        if self.holdout_days >= self.window_days:
            raise ValueError("holdout_days must be shorter than window_days")
        return self


class ModelSpec(_Strict):
    name: str
    description: str = ""
    taxi_type: Literal["green", "yellow"] = "green"
    target: Literal["duration"] = "duration"
    features: Features
    filters: dict[str, Bounds] = Field(default_factory=lambda: {"duration": Bounds(min=1, max=180)})
    training: Training
    monitoring: Monitoring = Monitoring()
    retraining: Retraining = Retraining()
    owners: tuple[str, ...] = ()
    source_file: str | None = Field(None, exclude=True)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not NAME_PATTERN.fullmatch(value):
            raise ValueError(
                f"name {value!r} must be lowercase letters, digits and underscores, "
                "starting with a letter (it becomes a Dagster asset key prefix)"
            )
        return value

    def drift_threshold(self) -> float:
        """The spec's threshold: its own, else the default it was loaded with."""
        return self.monitoring.drift_threshold

    @property
    def feature_columns(self) -> list[str]:
        return self.features.columns


class SpecError(ValueError):
    """A model spec file that cannot be used; the message names the file and the field."""


def load_spec(path: Path, default_drift_threshold: float = DEFAULT_DRIFT_THRESHOLD) -> ModelSpec:
    """The spec in ``path``; a file without ``monitoring.drift_threshold`` gets the default."""
    try:
        raw = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise SpecError(f"model spec {path}: cannot read it as YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise SpecError(f"model spec {path}: expected a mapping at the top level")
    monitoring = raw.get("monitoring")
    if monitoring is None or (isinstance(monitoring, dict) and monitoring.get("drift_threshold") is None):
        raw = {**raw, "monitoring": {**(monitoring or {}), "drift_threshold": default_drift_threshold}}
    try:
        spec = ModelSpec.model_validate({**raw, "source_file": str(path)})
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '<top>'}: {err['msg']}" for err in exc.errors()
        )
        raise SpecError(f"model spec {path}: {problems}") from exc
    if spec.name != path.stem:
        raise SpecError(f"model spec {path}: name {spec.name!r} must match the file name")
    return spec


def load_specs(
    directory: Path = PACKAGED_SPECS_DIR, default_drift_threshold: float = DEFAULT_DRIFT_THRESHOLD
) -> list[ModelSpec]:
    paths = sorted(directory.glob("*.yaml")) + sorted(directory.glob("*.yml"))
    if not paths:
        raise SpecError(f"no model spec (*.yaml) found in {directory}")
    return [load_spec(p, default_drift_threshold) for p in paths]
