"""Model specs: one small YAML file per model, validated into a ``ModelSpec``.

A spec names the taxi type, the features, the target, the row filters, the training month,
the drift threshold and the retraining window. ``definitions.py`` builds one full set of
assets, checks, sensors and schedules per spec, so adding a YAML file adds a model.
Specs are read from ``mlops_assets/model_specs/`` or from ``MODEL_SPECS_DIR`` when set.
"""

from __future__ import annotations

import os
import re
from datetime import date
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from mlops_assets import settings
from mlops_assets.partitions import FIRST_MONTH

PACKAGED_SPECS_DIR = Path(__file__).parent / "model_specs"
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


class Features(_Strict):
    categorical: tuple[str, ...] = ()
    numerical: tuple[str, ...] = ()
    # How rows with a missing feature are treated: "drop" leaves them unscored (and out of
    # training); "zero" scores them with the missing value read as 0 / category "NA".
    missing: Literal["drop", "zero"] = "drop"

    @model_validator(mode="after")
    def _some_features(self) -> Features:
        names = [*self.categorical, *self.numerical]
        if not names:
            raise ValueError("a spec needs at least one feature")
        if len(set(names)) != len(names):
            raise ValueError(f"a feature is listed twice: {names}")
        return self

    @property
    def columns(self) -> list[str]:
        return [*self.categorical, *self.numerical]


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
    drift_threshold: float | None = Field(None, gt=0.0)


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
        """The spec's own threshold, else ``DRIFT_THRESHOLD`` from the environment."""
        if self.monitoring.drift_threshold is not None:
            return self.monitoring.drift_threshold
        return settings.drift_threshold()

    @property
    def feature_columns(self) -> list[str]:
        return self.features.columns


class SpecError(ValueError):
    """A model spec file that cannot be used; the message names the file and the field."""


def load_spec(path: Path) -> ModelSpec:
    try:
        raw = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise SpecError(f"model spec {path}: cannot read it as YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise SpecError(f"model spec {path}: expected a mapping at the top level")
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


def specs_dir() -> Path:
    return Path(os.environ.get("MODEL_SPECS_DIR") or PACKAGED_SPECS_DIR)


def load_specs(directory: Path | None = None) -> list[ModelSpec]:
    directory = directory or specs_dir()
    paths = sorted(directory.glob("*.yaml")) + sorted(directory.glob("*.yml"))
    if not paths:
        raise SpecError(f"no model spec (*.yaml) found in {directory}")
    return [load_spec(p) for p in paths]
