"""Model specs: validation errors that name the file and field, and "a YAML file adds a model".

Builds real ``Definitions`` from spec folders written by the test; the two-spec test
materializes both specs' assets against real data. The default drift threshold is a value:
``DRIFT_THRESHOLD`` is parsed by ``Settings.from_env`` and handed to ``load_specs``. Nothing
is faked.
"""

import dataclasses
import textwrap
from pathlib import Path

import dagster as dg
import pytest

from mlops_assets import constants as C
from mlops_assets.definitions import build_defs, defs_from_settings
from mlops_assets.settings import Settings
from mlops_core.specs import SpecError, load_spec, load_specs

SECOND = """
name: green_taxi_duration_small
description: Distance-only model, a second independent model
taxi_type: green
features:
  numerical: [trip_distance]
filters:
  duration: {min: 1, max: 60}
  trip_distance: {min: 0.1, max: 50}
training:
  month: "2022-01"
  artifact: small.bin
owners: ["team:research"]
"""


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / f"{name}.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def test_default_spec_reproduces_the_original_design():
    (spec,) = load_specs()
    assert spec.name == "green_taxi_duration"
    assert spec.taxi_type == "green"
    assert spec.training.algorithm == "linear_regression"
    assert spec.training.artifact == "lin_reg.bin"
    assert spec.filters["duration"].min == 1 and spec.filters["duration"].max == 180
    assert "fare_amount" not in spec.feature_columns  # it leaks the duration


def test_threshold_comes_from_spec_then_env(tmp_path):
    (spec,) = load_specs()
    assert spec.drift_threshold() == 0.20
    settings = Settings.from_env({"MLOPS_HOME": str(tmp_path), "DRIFT_THRESHOLD": "0.35"})
    (spec,) = load_specs(default_drift_threshold=settings.drift_threshold)
    assert spec.drift_threshold() == 0.35
    with pytest.raises(ValueError, match="DRIFT_THRESHOLD must be a number, got 'high'"):
        Settings.from_env({"MLOPS_HOME": str(tmp_path), "DRIFT_THRESHOLD": "high"})
    own = load_spec(
        write(
            tmp_path,
            "own",
            SECOND.replace("owners", "monitoring: {drift_threshold: 0.5}\nowners").replace(
                "green_taxi_duration_small", "own"
            ),
        ),
        default_drift_threshold=settings.drift_threshold,
    )
    assert own.drift_threshold() == 0.5


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            lambda s: s.replace('"2022-01"', '"2022-1"'),
            r"training\.month: .*must look like 2022-01",
        ),
        (lambda s: s.replace('"2022-01"', '"2019-05"'), "before the first partition"),
        (lambda s: s.replace("taxi_type: green", "taxi_type: purple"), "taxi_type"),
        (
            lambda s: s.replace("max: 60}", "max: 60, mx: 3}"),
            r"filters\.duration\.mx: Extra inputs",
        ),
        (
            lambda s: s.replace("{min: 1, max: 60}", "{min: 60, max: 1}"),
            "min .* is greater than max",
        ),
        (
            lambda s: s.replace("numerical: [trip_distance]", "numerical: []"),
            "at least one feature",
        ),
        (
            lambda s: s + "\nretraining: {window_days: 7, holdout_days: 7}\n",
            "holdout_days must be shorter",
        ),
        # training.params: checked against the algorithm's estimator when the spec loads
        (
            lambda s: s.replace("  artifact:", "  algorithm: lasso\n  params: {alhpa: 0.1}\n  artifact:"),
            r"training: .*\['alhpa'\] are not parameters of lasso \(scikit-learn's Lasso: alpha, ",
        ),
        (
            lambda s: s.replace("  artifact:", "  algorithm: lasso\n  params: {alpha: 1e-3}\n  artifact:"),
            r"'alpha' parameter of Lasso must be a float .*write 1e-3 as 1\.0e-3",
        ),
        (
            lambda s: s.replace(
                "  artifact:", "  algorithm: linear_regression\n  params: {positive: true}\n  artifact:"
            ),
            r"params do not suit linear_regression fitted on a sparse matrix .*dense data is required",
        ),
        (
            lambda s: s.replace("  artifact:", "  algorithm: ridge\n  params: {solver: svd}\n  artifact:"),
            r"solver='svd' does not support fitting the intercept on sparse data",
        ),
    ],
)
def test_invalid_specs_name_the_file_and_field(tmp_path, edit, message):
    path = write(tmp_path, "green_taxi_duration_small", edit(SECOND))
    with pytest.raises(SpecError, match=message) as err:
        load_spec(path)
    assert str(path) in str(err.value)


def test_name_must_match_file(tmp_path):
    with pytest.raises(SpecError, match="must match the file name"):
        load_spec(write(tmp_path, "other", SECOND))


def test_unknown_feature_column_fails_when_reading(tmp_path, resources):
    spec = load_spec(
        write(tmp_path, "green_taxi_duration_small", SECOND.replace("[trip_distance]", "[trip_km]"))
    )
    defs = build_defs([spec], resources)
    with pytest.raises(Exception, match=r"trip_km"):
        dg.materialize(
            list(defs.assets),
            selection=[dg.AssetKey([spec.name, C.TRIPS])],
            resources=defs.resources,
            partition_key="2022-01-03",
        )


def test_second_yaml_adds_an_independent_model(tmp_path, settings):
    folder = tmp_path / "specs"
    folder.mkdir()
    (folder / "green_taxi_duration.yaml").write_text(
        load_specs()[0].source_file and Path(load_specs()[0].source_file).read_text()
    )
    write(folder, "green_taxi_duration_small", SECOND)
    settings = dataclasses.replace(settings, specs_dir=folder)  # what MODEL_SPECS_DIR sets
    specs = load_specs(settings.specs_dir)
    assert [s.name for s in specs] == ["green_taxi_duration", "green_taxi_duration_small"]
    defs = defs_from_settings(settings)
    keys = {a.key for a in defs.assets}
    for spec in specs:
        assert dg.AssetKey([spec.name, C.TRIPS]) in keys
        assert dg.AssetKey([spec.name, C.DURATION_MODEL]) in keys
    graph = defs.resolve_asset_graph()
    small_trips = dg.AssetKey(["green_taxi_duration_small", C.TRIPS])
    small_model = dg.AssetKey(["green_taxi_duration_small", C.DURATION_MODEL])
    assert graph.get(small_model).parent_keys == {small_trips}  # no cross-spec edges
    assert graph.get(small_trips).group_name == "green_taxi_duration_small"

    # Materialize only the second spec: its own trips and model, registered under its own name.
    result = dg.materialize(
        list(defs.assets),
        selection=[small_trips],
        resources=defs.resources,
        tags={
            "dagster/asset_partition_range_start": "2022-01-01",
            "dagster/asset_partition_range_end": "2022-01-31",
        },
    )
    assert result.success
    result = dg.materialize(
        list(defs.assets),
        selection=[small_model],
        resources=defs.resources,
        partition_key="2022-01-01",
    )
    assert result.success
    (event,) = result.get_asset_materialization_events()
    assert event.asset_key == small_model
    metadata = event.event_specific_data.materialization.metadata
    assert metadata["model_version"].value == "1"
    assert metadata["artifact"].value.endswith("green_taxi_duration_small/v1/small.bin")
    assert Path(metadata["artifact"].value).is_file()
    # the default spec's assets were not touched
    assert not (tmp_path / "mlops_home" / "assets" / "green_taxi_duration").exists()
