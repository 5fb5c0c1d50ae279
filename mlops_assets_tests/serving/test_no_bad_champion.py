"""No model that loses to the mean predictor becomes champion, the first one included, and
with no acceptable model neither monitoring nor the service uses one: both say why.

Real components: the real 2022-01 TLC file, doctored so that the month's second half (the
holdout) has its trip distances shuffled between trips (a scrambled meter column: the model
learns minutes per mile on the first half and is worse than the mean on the second), the
real assets under ``dg.materialize``, a real MLflow store, the prediction service's own
``ModelService`` behind Django's test client. ``champion.consider`` is called directly with
real trained models for the case "worse than the mean but better than the champion".
"""

import dataclasses
from datetime import date

import dagster as dg
import pytest

from mlops_assets import constants as C
from mlops_assets import resources as R
from mlops_assets.definitions import build_defs
from mlops_assets.resources import build_resources
from mlops_assets.training import model as M
from mlops_assets.training.champion import About, consider
from mlops_assets.training.store import TimelineStore
from mlops_assets_tests.helpers import default_spec, failure_message, load_trips, scrambled_copy
from mlops_core.schema import DURATION

SPEC = default_spec()


@pytest.fixture
def scrambled_dir(tmp_path, trip_data_dir):
    """The real files, with 2022-01's trip distances shuffled among the trips of 16-31 January."""
    return scrambled_copy(trip_data_dir, tmp_path / "tlc")


def test_a_first_model_worse_than_the_mean_is_refused_and_never_served(
    settings, scrambled_dir, service, client, report_figure
):
    scrambled = dataclasses.replace(settings, trip_data_dir=scrambled_dir)
    defs = build_defs([SPEC], build_resources(scrambled))
    month = {
        "dagster/asset_partition_range_start": "2022-01-01",
        "dagster/asset_partition_range_end": "2022-01-31",
    }
    assets = list(defs.assets)
    assert dg.materialize(
        assets, selection=[dg.AssetKey([SPEC.name, C.TRIPS])], resources=defs.resources, tags=month
    ).success
    result = dg.materialize(
        assets,
        selection=[dg.AssetKey([SPEC.name, C.DURATION_MODEL])],
        resources=defs.resources,
        partition_key="2022-01-01",
        raise_on_error=False,
    )

    # The blocking check fails the run, after the materialization and its decision are recorded.
    assert not result.success
    assert "blocking asset check failed" in failure_message(result)
    (check,) = result.get_asset_check_evaluations()
    assert (check.check_name, check.passed) == (C.CHECK_MODEL_RMSE, False)
    (event,) = result.get_asset_materialization_events()
    md = {k: v.value for k, v in event.event_specific_data.materialization.metadata.items()}
    report_figure(
        f"2022-01 with the second half's distances scrambled: v1 holdout RMSE {md['holdout_rmse']:.3f} "
        f"vs mean predictor {md['mean_baseline_rmse']:.3f} -> {md['decision']}"
    )
    assert md["holdout_rmse"] > md["mean_baseline_rmse"]
    assert md["decision"] == "not promoted"
    reason = md["decision_reason"]
    assert reason.startswith(f"holdout RMSE {md['holdout_rmse']:.4f} does not beat the mean predictor's")

    # MLflow: registered (the evidence), tagged with the reason, no champion alias.
    registry = R.model_registry(settings)
    assert registry.champion(SPEC.name) is None
    tags = registry.version_tags(SPEC.name, "1")
    assert tags["decision"] == "not_promoted" and tags["decision_reason"] == reason
    assert TimelineStore(R.metrics_db(settings)).entries(SPEC.name) == []

    # Monitoring refuses with the reason.
    assert dg.materialize(
        list(defs.assets),
        selection=[dg.AssetKey([SPEC.name, C.TRIPS])],
        resources=defs.resources,
        partition_key="2022-02-01",
    ).success
    monitored = dg.materialize(
        list(defs.assets),
        selection=[dg.AssetKey([SPEC.name, C.PREDICTIONS])],
        resources=defs.resources,
        partition_key="2022-02-01",
        raise_on_error=False,
    )
    assert not monitored.success
    assert f"no model of this spec was accepted (v1 was not promoted: {reason})" in failure_message(monitored)

    # The service (default MODEL_URI: the champion in MLOPS_HOME's registry) is not ready, and says why.
    service.start(background=False)
    response = client.get("/ready")
    assert response.status_code == 503
    detail = response.json()["detail"]
    assert "no acceptable model" in detail and f"v1 was not promoted: {reason}" in detail


def test_a_candidate_worse_than_the_mean_is_refused_even_when_it_beats_the_champion(
    settings, trip_data_dir, report_figure
):
    """Both models are real fits of the default spec on real trips whose durations were
    turned around (a bug upstream, say): the champion on 180 - duration (wildly off), the
    candidate on 45 - duration (anti-correlated with the truth, less far off). On the real
    holdout the candidate beats the champion and still loses to the mean: refused."""
    registry, db = R.model_registry(settings), R.metrics_db(settings)
    first = load_trips(SPEC, trip_data_dir, "2022-01-01", "2022-01-16")
    holdout = load_trips(SPEC, trip_data_dir, "2022-01-16", "2022-02-01")

    champion = M.train(SPEC, first.assign(**{DURATION: 180 - first[DURATION]}), holdout)
    registered = registry.register(
        champion, artifact=SPEC.training.artifact, params={}, tags={"source": "test"}
    )
    registry.set_champion(SPEC.name, registered.version)
    TimelineStore(db).record(SPEC.name, registered.version, date(2022, 1, 16), reason="test champion")

    candidate = M.train(SPEC, first.assign(**{DURATION: (45 - first[DURATION]).clip(lower=1)}), holdout)
    champion_rmse = M.score(champion, holdout).rmse
    info = candidate.info
    report_figure(
        f"gate: candidate holdout RMSE {info.holdout.rmse:.2f}, champion {champion_rmse:.2f}, "
        f"mean predictor {info.mean_baseline.rmse:.2f}"
    )
    assert info.mean_baseline.rmse < info.holdout.rmse < champion_rmse
    version = registry.register(
        candidate, artifact=SPEC.training.artifact, params={}, tags={"source": "test"}
    )
    decision = consider(
        SPEC,
        candidate=candidate,
        registered=version,
        holdout_rows=holdout,
        earliest_effective=date(2022, 2, 1),
        registry=registry,
        db=db,
        about=About(key="retrain:2022-01-31", day=date(2022, 1, 31)),
    )
    assert not decision.promoted
    assert "does not beat the mean predictor's" in decision.reason
    assert registry.champion(SPEC.name) == registered.version
    assert [t["model_version"] for t in TimelineStore(db).entries(SPEC.name)] == [registered.version]
    tags = registry.version_tags(SPEC.name, version.version)
    assert tags["decision"] == "not_promoted" and tags["decision_reason"] == decision.reason
    assert float(tags["mean_baseline_rmse"]) == pytest.approx(info.mean_baseline.rmse)
