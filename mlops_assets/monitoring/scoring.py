"""Scoring a day: which model was in effect, loading it once, and the day's predictions."""

from __future__ import annotations

from datetime import date

import dagster as dg
import pandas as pd

from mlops_assets.lib.storage.engine import MetricsDB
from mlops_assets.monitoring import evidently_metrics as E
from mlops_assets.training import timeline as T
from mlops_assets.training.registry_resource import ModelRegistry
from mlops_assets.training.store import TimelineStore
from mlops_core.bundle import PREDICTION, ModelBundle
from mlops_core.schema import DURATION, PICKUP
from mlops_core.segments import source_columns
from mlops_core.specs import ModelSpec

MODEL_VERSION = "model_version"
# After a promotion, the previous champion's predictions on the same trips (and its version).
SHADOW_PREDICTION, SHADOW_VERSION = "shadow_prediction", "shadow_version"


class NoModelInEffect(RuntimeError):
    pass


class BundleCache:
    """Loads each model version once per step."""

    def __init__(self, registry: ModelRegistry, spec: ModelSpec):
        self.registry, self.spec, self._bundles, self._references = registry, spec, {}, {}

    def reference(self, version: str):
        """The model's reference data as an Evidently dataset, built once per version."""
        if version not in self._references:
            bundle = self.get(version)
            self._references[version] = E.reference_dataset(bundle.reference, bundle.features)
        return self._references[version]

    def get(self, version: str) -> ModelBundle:
        if version not in self._bundles:
            self._bundles[version] = self.registry.load(self.spec.name, version, self.spec.training.artifact)
        return self._bundles[version]


def versions_in_effect(
    spec: ModelSpec, db: MetricsDB, days: list[str], registry: ModelRegistry | None = None
) -> dict[str, str]:
    """The model version in effect on each day, from the model timeline (``registry``: to say
    why there is none when promotion refused the spec's models)."""
    timeline = TimelineStore(db).entries(spec.name)
    if not timeline:
        refused = registry.refusal(spec.name) if registry is not None else None
        raise NoModelInEffect(
            f"{spec.name}: the metrics DB at {db.describe()} has no model in effect yet; "
            + (
                f"no model of this spec was accepted ({refused}); monitoring needs one that beats "
                "the mean predictor"
                if refused
                else f"materialize {spec.name}/duration_model for {spec.training.month} first"
            )
        )
    found, missing = T.versions_on(timeline, [date.fromisoformat(d) for d in days])
    if missing:
        first = timeline[0]
        raise NoModelInEffect(
            f"{spec.name}: no model is in effect on {missing[0]}"
            f"{f' .. {missing[-1]}' if len(missing) > 1 else ''}; the first model "
            f"(v{first['model_version']}) is in effect from {first['effective_from']}"
        )
    return {day.isoformat(): version for day, version in found.items()}


def shadows_in_effect(spec: ModelSpec, db: MetricsDB, days: list[str]) -> dict[str, str]:
    """The previous champion to score in shadow on each of ``days`` that has one."""
    timeline = TimelineStore(db).entries(spec.name)
    out = {}
    for day in days:
        version = T.shadow_on(timeline, date.fromisoformat(day), spec.retraining.shadow_days)
        if version is not None:
            out[day] = version
    return out


def score_day(
    spec: ModelSpec,
    trips: pd.DataFrame,
    bundle: ModelBundle,
    version: str,
    shadow: tuple[ModelBundle, str] | None = None,
) -> pd.DataFrame:
    """The day's trips (features, segments' source columns) with the model's ``prediction``
    (NaN where not scorable) and version;
    with ``shadow`` (a previous champion and its version) its predictions on the same trips
    too (``shadow_prediction``, ``shadow_version``)."""
    segment_columns = [
        c
        for c in source_columns(spec.monitoring.segments)
        if c in trips and c not in (PICKUP, *spec.feature_columns)
    ]
    # The segments' source columns ride along (zones, distance) for the day's segment figures.
    frame = trips[[PICKUP, *spec.feature_columns, *segment_columns, DURATION]].copy()
    frame[PREDICTION] = bundle.predict(frame)
    frame[MODEL_VERSION] = version
    if shadow is not None:
        frame[SHADOW_PREDICTION] = shadow[0].predict(frame)
        frame[SHADOW_VERSION] = shadow[1]
    return frame


def predictions_metadata(frame: pd.DataFrame, version: str) -> dict:
    md = {
        "rows": dg.MetadataValue.int(len(frame)),
        "scored": dg.MetadataValue.int(int(frame[PREDICTION].notna().sum())),
        "model_version": dg.MetadataValue.text(version),
    }
    if SHADOW_VERSION in frame:
        md["shadow_version"] = dg.MetadataValue.text(str(frame[SHADOW_VERSION].iloc[0]) if len(frame) else "")
    return md
