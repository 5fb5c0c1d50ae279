"""Trips and duration_model materialized with ``dg.materialize`` on real partitions.

Real TLC files, a real MLflow store (SQLite, per-test MLOPS_HOME), real parquet outputs.
Bad inputs (corrupt file, missing column, empty days) are built from the real files.
"""

import dataclasses
import math
import shutil
from pathlib import Path

import dagster as dg
import mlflow
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from mlops_assets import constants as C
from mlops_assets import resources as R
from mlops_assets.definitions import build_defs
from mlops_assets.resources import build_resources
from mlops_assets.training.model import ModelBundle
from mlops_assets_tests.helpers import failure_message, train_month
from mlops_core import features as F
from mlops_core.specs import load_specs

SPEC = load_specs()[0]
TRIPS = dg.AssetKey([SPEC.name, C.TRIPS])
MODEL = dg.AssetKey([SPEC.name, C.DURATION_MODEL])


def month_range(month: str, last_day: int) -> dict[str, str]:
    return {
        "dagster/asset_partition_range_start": f"{month}-01",
        "dagster/asset_partition_range_end": f"{month}-{last_day:02d}",
    }


def materialize(defs, key, **kw):
    return dg.materialize(
        list(defs.assets), selection=[key], resources=defs.resources, raise_on_error=False, **kw
    )


def train(defs, month="2022-01", last_day=31):
    trips = materialize(defs, TRIPS, tags=month_range(month, last_day))
    assert trips.success
    return materialize(defs, MODEL, partition_key=f"{month}-01")


def test_trips_month_is_one_run_with_per_day_metadata(isolated_env, resources):
    defs = build_defs([SPEC], resources)
    result = materialize(defs, TRIPS, tags=month_range("2022-02", 28))
    assert result.success
    events = result.get_asset_materialization_events()
    assert len(events) == 28
    rows = {e.partition: e.event_specific_data.materialization.metadata["rows"].value for e in events}
    assert all(n > 1000 for n in rows.values())
    files = sorted((isolated_env / "assets" / SPEC.name / "trips").glob("*.parquet"))
    assert [f.stem for f in files] == sorted(rows)
    checks = {c.check_name: c.passed for c in result.get_asset_check_evaluations()}
    assert checks == {
        C.CHECK_TRIPS_SCHEMA: True,
        C.CHECK_TRIPS_NOT_EMPTY: True,
        C.CHECK_TRIPS_DURATION: True,
    }
    total = events[0].event_specific_data.materialization.metadata["rows_kept"].value
    assert total == sum(rows.values())


def test_duration_model_trains_registers_and_becomes_champion(
    isolated_env, settings, resources, report_figure, real_data
):
    defs = build_defs([SPEC], resources)
    result = train(defs)
    assert result.success
    (event,) = result.get_asset_materialization_events()
    md = event.event_specific_data.materialization.metadata
    rmse, baseline = md["holdout_rmse"].value, md["mean_baseline_rmse"].value
    report_figure(
        f"duration_model 2022-01 ({'real' if real_data else 'synthetic'} data): "
        f"holdout RMSE {rmse:.3f} min, "
        f"MAE {md['holdout_mae'].value:.3f}; mean predictor RMSE {baseline:.3f} "
        f"({md['n_train'].value} train / {md['n_holdout'].value} holdout rows)"
    )
    assert math.isfinite(rmse) and rmse < baseline
    checks = {c.check_name: c.passed for c in result.get_asset_check_evaluations()}
    assert checks == {C.CHECK_MODEL_RMSE: True}

    artifact = Path(md["artifact"].value)
    assert artifact == isolated_env / "models" / SPEC.name / "v1" / "lin_reg.bin"
    bundle = ModelBundle.load(artifact.parent)
    assert bundle.info.window_start == "2022-01-01" and bundle.info.window_end == "2022-01-31"
    assert bundle.info.holdout.rmse == rmse
    assert len(bundle.reference) == md["n_holdout"].value
    assert {"prediction", "duration", *SPEC.feature_columns} <= set(bundle.reference.columns)

    registry = R.model_registry(settings)
    assert registry.champion(SPEC.name) == "1"
    client = mlflow.MlflowClient(registry.uri())
    run = client.get_run(md["mlflow_run_id"].value)
    assert run.info.status == "FINISHED"
    assert run.data.metrics["holdout_rmse"] == pytest.approx(rmse)
    assert run.data.params["training_month"] == "2022-01"
    assert run.info.run_name == "monthly training 2022-01"
    assert registry.version_tags(SPEC.name, "1")["fingerprint"] == md["fingerprint"].value

    # Re-materializing gives the same model and registers nothing new.
    again = materialize(defs, MODEL, partition_key="2022-01-01")
    (event2,) = again.get_asset_materialization_events()
    md2 = event2.event_specific_data.materialization.metadata
    assert md2["model_version"].value == "1" and md2["newly_registered"].value is False
    assert md2["holdout_rmse"].value == rmse
    assert len(client.search_model_versions(f"name='{SPEC.name}'")) == 1

    # A bundle downloaded from MLflow (no local cache) predicts exactly like the cached one.
    shutil.rmtree(isolated_env / "models")
    fresh = R.model_registry(settings).load(SPEC.name, "1")
    assert (fresh.predict(bundle.reference) == bundle.predict(bundle.reference)).all()


@pytest.fixture
def doctored_dir(tmp_path, trip_data_dir):
    """A copy of the real files that a test may spoil."""
    folder = tmp_path / "tlc"
    shutil.copytree(trip_data_dir, folder, ignore=shutil.ignore_patterns("*.csv", "*.md", "SHA256SUMS"))
    return folder


@pytest.fixture
def doctored(settings, doctored_dir) -> dg.Definitions:
    """The default spec's definitions reading trips from ``doctored_dir``."""
    return build_defs([SPEC], build_resources(dataclasses.replace(settings, trip_data_dir=doctored_dir)))


def test_corrupt_file_fails_with_its_name_and_writes_nothing(isolated_env, doctored_dir, doctored):
    (doctored_dir / "green_tripdata_2022-02.parquet").write_bytes(b"PAR1garbage")
    result = materialize(doctored, TRIPS, tags=month_range("2022-02", 28))
    assert not result.success
    message = failure_message(result)
    assert "green_tripdata_2022-02.parquet: not a readable parquet file" in message
    assert not (isolated_env / "assets").exists()


def test_missing_column_fails_with_file_and_column(isolated_env, doctored_dir, doctored):
    path = doctored_dir / "green_tripdata_2022-02.parquet"
    pq.write_table(pq.read_table(path).drop_columns(["DOLocationID"]), path)
    result = materialize(doctored, TRIPS, partition_key="2022-02-10")
    assert not result.success
    message = failure_message(result)
    assert f"{path}: required column 'DOLocationID' is missing" in message
    assert not (isolated_env / "assets").exists()


def test_empty_days_are_written_empty_and_flagged_on_weekdays(doctored_dir, doctored):
    path = doctored_dir / "green_tripdata_2022-02.parquet"
    table = pq.read_table(path)
    day = pc.strftime(table.column("lpep_pickup_datetime"), format="%Y-%m-%d")
    keep = pc.invert(
        pc.is_in(day, value_set=pa.array(["2022-02-09", "2022-02-12"]))
    )  # a Wednesday, a Saturday
    pq.write_table(table.filter(keep), path)
    result = materialize(
        doctored,
        TRIPS,
        tags={
            "dagster/asset_partition_range_start": "2022-02-08",
            "dagster/asset_partition_range_end": "2022-02-13",
        },
    )
    assert result.success  # an empty day is data, not a crash
    rows = {
        e.partition: e.event_specific_data.materialization.metadata["rows"].value
        for e in result.get_asset_materialization_events()
    }
    assert rows["2022-02-09"] == 0 and rows["2022-02-12"] == 0 and rows["2022-02-10"] > 0
    checks = {c.check_name: c for c in result.get_asset_check_evaluations()}
    weekday_check = checks[C.CHECK_TRIPS_NOT_EMPTY]
    assert weekday_check.passed is False
    assert weekday_check.metadata["empty_weekdays"].value == "2022-02-09"  # Saturday is fine


def test_month_without_trips_refuses_to_train_and_registers_nothing(
    isolated_env, settings, doctored_dir, doctored
):
    path = doctored_dir / "green_tripdata_2022-02.parquet"
    pq.write_table(pq.read_table(path).slice(0, 0), path)
    result = train(doctored, "2022-02", 28)
    assert not result.success
    message = failure_message(result)
    assert "green_taxi_duration: no trips in 2022-02" in message
    assert R.model_registry(settings).champion(SPEC.name) is None
    assert not (isolated_env / "models").exists()


def test_the_model_uses_distance_and_never_predicts_outside_the_durations(trip_data_dir, report_figure):
    """The default spec trains inside its distance bounds: on real 2022-01 a longer trip takes
    longer (for every zone pair seen), the distance coefficient is a plausible minutes-per-mile,
    and no prediction leaves the trained duration range, even at the domain's edges."""
    bundle = train_month(SPEC, trip_data_dir, "2022-01")
    assert bundle.info.domain == {"trip_distance": [0.0, 80.0]}
    assert bundle.info.target_range == [1.0, 180.0]
    dv, model = bundle.pipeline.named_steps["dv"], bundle.pipeline.named_steps["model"]
    per_mile = model.coef_[dv.feature_names_.index("trip_distance")]
    report_figure(f"duration_model 2022-01: {per_mile:.3f} minutes per mile")
    assert 1.0 < per_mile < 6.0  # 10 to 60 mph

    pairs = bundle.reference[["PULocationID", "DOLocationID"]].drop_duplicates()
    at = {
        miles: bundle.predict(pairs.assign(trip_distance=float(miles)).reset_index(drop=True))
        for miles in (0, 1, 10, 80)
    }
    assert (at[10] > at[1]).all()
    for values in at.values():
        assert np.isfinite(values).all()
        assert values.min() >= 1.0 and values.max() <= 180.0
    # The unclipped model does go below 1 minute somewhere: the clip is what keeps it out.
    raw = bundle.pipeline.predict(F.to_dicts(pairs.assign(trip_distance=0.0), bundle.features))
    assert raw.min() < 1.0
