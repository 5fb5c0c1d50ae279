"""Every algorithm a spec accepts trains, is saved as data, and predicts the same everywhere.

For each of ``linear_regression``, ``ridge`` and ``lasso``, with a ``params:`` block, a spec
file is written and loaded through the spec validator; the model is trained on the real
2022-01 month through the real assets (trips, then ``duration_model``: registered in a real
MLflow store, champion); it must beat the mean predictor on its holdout. Its ``lin_reg.bin``
holds only skops' trusted types and loads through the safe loader as a two-step
``DictVectorizer`` + regressor pipeline with the spec's parameters. The ``predictions`` asset
scores three real days (2022-02-01..03, each over 512 trips: the vectorised path) and the
prediction service (Django's test client, the champion of the same store) answers exactly the
stored predictions, for a batch and for single trips (the per-row path), which are exactly the
pipeline's own ``predict`` on the same rows, clipped to the trained durations.

Also: LinearRegression and Ridge fit exactly as a plain ``Pipeline.fit`` fits them (the fit
path feeds the regressor 32-bit sparse indices so that Lasso can fit at all), and the README's
spec example validates and trains. Nothing is faked.
"""

from __future__ import annotations

import json
from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd
import pytest
import skops.io as sio
import yaml
from sklearn.feature_extraction import DictVectorizer
from sklearn.linear_model import Lasso, LinearRegression, Ridge
from sklearn.pipeline import Pipeline

from mlops_assets import constants as C
from mlops_assets.definitions import build_defs
from mlops_assets.training import model as M
from mlops_assets_tests.helpers import (
    default_spec,
    failure_message,
    load_trips,
    train_month,
    train_through_assets,
)
from mlops_assets_tests.serving.conftest import REPO, home_registry, trip_payload
from mlops_core import features as F
from mlops_core.bundle import REGRESSORS, clip_to, load_pipeline
from mlops_core.schema import DURATION
from mlops_core.specs import ALGORITHMS, load_specs

# (algorithm, its params: block as written in YAML, what the validator must make of it, class)
CASES = [
    ("linear_regression", "{tol: 1.0e-8}", {"tol": 1e-8}, LinearRegression),
    ("ridge", "{alpha: 10.0}", {"alpha": 10.0}, Ridge),
    ("lasso", "{alpha: 0.01}", {"alpha": 0.01}, Lasso),
]
DAYS = ("2022-02-01", "2022-02-02", "2022-02-03")


def test_the_cases_cover_every_algorithm_a_spec_accepts():
    """Every accepted algorithm is tested below, trains as its class, and the safe loader takes it."""
    assert {c[0]: c[3] for c in CASES} == M.ESTIMATORS
    assert {k: v.__name__ for k, v in M.ESTIMATORS.items()} == ALGORITHMS
    assert set(REGRESSORS) == set(ALGORITHMS.values())


def spec_with(folder, algorithm: str, params_yaml: str):
    """The packaged default spec with another algorithm and params, through the validator."""
    text = Path(default_spec().source_file).read_text()
    line = "  algorithm: linear_regression\n"
    assert text.count(line) == 1
    folder.mkdir()
    (folder / "green_taxi_duration.yaml").write_text(
        text.replace(line, f"  algorithm: {algorithm}\n  params: {params_yaml}\n")
    )
    (spec,) = load_specs(folder)
    return spec


@pytest.mark.parametrize(
    ("algorithm", "params_yaml", "params", "estimator"), CASES, ids=[c[0] for c in CASES]
)
def test_each_algorithm_trains_and_predicts_the_same_in_the_asset_and_the_service(
    tmp_path,
    isolated_env,
    resources,
    service,
    client,
    report_figure,
    algorithm,
    params_yaml,
    params,
    estimator,
):
    spec = spec_with(tmp_path / "specs", algorithm, params_yaml)
    assert (spec.training.algorithm, spec.training.params) == (algorithm, params)
    defs = build_defs([spec], resources)

    trained = train_through_assets(defs, spec, "2022-01")
    assert trained.success, failure_message(trained)
    (event,) = trained.get_asset_materialization_events()
    md = {k: v.value for k, v in event.event_specific_data.materialization.metadata.items()}
    assert md["holdout_rmse"] < md["mean_baseline_rmse"], md
    assert (md["model_version"], md["decision"]) == ("1", "promoted")
    report_figure(
        f"{algorithm} {params_yaml} on 2022-01: holdout RMSE {md['holdout_rmse']:.4f} vs mean "
        f"predictor {md['mean_baseline_rmse']:.4f} ({md['n_holdout']} rows)"
    )

    # Saved as data: trusted types only, loaded by the safe loader, the spec's parameters kept.
    artifact = home_registry(isolated_env).bundle_dir(spec.name, "1") / spec.training.artifact
    assert md["artifact"] == str(artifact)
    assert sio.get_untrusted_types(file=artifact) == []
    pipeline = load_pipeline(artifact)
    assert [(name, type(step)) for name, step in pipeline.steps] == [
        ("dv", DictVectorizer),
        ("model", estimator),
    ]
    assert pipeline.named_steps["model"].get_params().items() >= params.items()
    bundle = home_registry(isolated_env).load(spec.name, "1", spec.training.artifact)

    # The predictions asset on three real days (each over 512 trips: scored through design_matrix).
    keys = [dg.AssetKey([spec.name, name]) for name in (C.TRIPS, C.PREDICTIONS)]
    tags = {"dagster/asset_partition_range_start": DAYS[0], "dagster/asset_partition_range_end": DAYS[-1]}
    scored = dg.materialize(list(defs.assets), selection=keys, resources=defs.resources, tags=tags)
    assert scored.success
    frames = [
        pd.read_parquet(isolated_env / "assets" / spec.name / C.PREDICTIONS / f"{d}.parquet") for d in DAYS
    ]
    assert all(len(f) >= F.VECTORISED_FROM_ROWS for f in frames)
    stored = pd.concat(frames, ignore_index=True)
    assert set(stored["model_version"]) == {"1"} and stored["prediction"].notna().all()
    expected = stored["prediction"].tolist()
    # ... exactly the pipeline's own predict (one dict per row), clipped, and the bundle's.
    own = clip_to(pipeline.predict(F.to_dicts(stored, spec.features)), bundle.info.target_range)
    assert own.tolist() == expected
    assert bundle.predict(stored).tolist() == expected

    # The service serves the champion of the same store and answers the same floats.
    service.start(background=False)
    assert service.current is not None, service.problem
    body = [trip_payload(r) for r in stored.to_dict("records")]
    response = client.post("/predict", data=json.dumps(body), content_type="application/json")
    assert response.status_code == 200, response.content[:500]
    answer = response.json()
    assert answer["model_version"] == "1"
    assert answer["duration_minutes"] == expected
    for i in range(0, len(stored), len(stored) // 25):  # single trips: the per-row path
        one = client.post("/predict", data=json.dumps(body[i]), content_type="application/json")
        assert one.json()["duration_minutes"] == expected[i]
    info = client.get("/model").json()
    assert info["algorithm"] == algorithm


@pytest.mark.parametrize(
    "estimator",
    [LinearRegression(), Ridge(), Ridge(alpha=10.0)],
    ids=["linear_regression", "ridge", "ridge-alpha"],
)
def test_linear_regression_and_ridge_fit_exactly_as_one_pipeline_does(trip_data_dir, estimator):
    """What the models were before lasso could train: ``Pipeline.fit`` on the feature dicts."""
    spec = default_spec()
    rows = load_trips(spec, trip_data_dir, "2022-01-01", "2022-01-16")
    rows = rows[F.scorable(rows, spec.features)]
    dicts, y = F.to_dicts(rows, spec.features), rows[DURATION].to_numpy(dtype="float64")

    plain = Pipeline([("dv", DictVectorizer()), ("model", estimator)]).fit(dicts, y)
    ours = M.fit_pipeline(type(estimator)(**estimator.get_params()), dicts, y)

    assert ours.named_steps["dv"].vocabulary_ == plain.named_steps["dv"].vocabulary_
    assert np.array_equal(ours.named_steps["model"].coef_, plain.named_steps["model"].coef_)
    assert ours.named_steps["model"].intercept_ == plain.named_steps["model"].intercept_
    assert np.array_equal(ours.predict(dicts), plain.predict(dicts))


def test_the_readme_spec_example_loads_and_trains(tmp_path, trip_data_dir):
    """The spec in the README's "Adding a model" validates and its algorithm trains on its month."""
    readme = (REPO / "README.md").read_text()
    section = readme[readme.index("## Adding a model") :]
    example = section[section.index("```yaml\n") + len("```yaml\n") : section.index("```\n", 8)]
    name = yaml.safe_load(example)["name"]
    folder = tmp_path / "specs"
    folder.mkdir()
    (folder / f"{name}.yaml").write_text(example)
    (spec,) = load_specs(folder)
    assert spec.training.algorithm in M.ESTIMATORS and spec.training.params

    bundle = train_month(spec, trip_data_dir, spec.training.month)
    assert type(bundle.pipeline.named_steps["model"]) is M.ESTIMATORS[spec.training.algorithm]
    assert bundle.pipeline.named_steps["model"].get_params().items() >= spec.training.params.items()
    assert bundle.info.holdout.rmse < bundle.info.mean_baseline.rmse
