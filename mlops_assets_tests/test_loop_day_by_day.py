"""The alert → retrain → promotion → rollback loop at the cadence production runs it: one
monitoring run of the day (the daily job's whole chain, ``champion_review`` included), then
the real alert sensor, then the runs it requests, day after day, on a real PostgreSQL metrics
DB, real TLC days of February 2022, a real MLflow store and a persistent Dagster instance.

* the retraining policy waits for data after the change, retrains once per episode, cools down
  after a candidate that was not promoted, stops after ``max_attempts``, and a daemon restart
  (a tick without cursor) asks for nothing new and emails nothing twice;
* a refusal is a recorded decision and the run succeeds;
* a candidate that predicts exactly like the champion is a tie, refused by the paired test;
* a worse champion (trained on shuffled durations, promoted by the test as an operator would
  by hand) is scored against the previous one in shadow and rolled back: one email, one
  reload of the prediction service (a loopback HTTP recorder stands in for the service's
  /reload; the real service is test_e2e's), the alias and the timeline back, the next day
  monitored with the restored model.

The drivers are bench/cadence.py's (tests may import the benchmarks' helpers).
"""

from __future__ import annotations

import dataclasses
import email
import email.policy
from datetime import date, timedelta

import dagster as dg
import numpy as np
import pytest

from bench.cadence import Driver
from mlops_assets import resources as R
from mlops_assets.definitions import build_defs
from mlops_assets.monitoring.store import DailyMetricsStore
from mlops_assets.resources import build_resources
from mlops_assets.training import model as M
from mlops_assets.training.champion import About, consider, set_champion
from mlops_assets.training.promotion import Decision
from mlops_assets.training.store import DecisionStore, TimelineStore
from mlops_assets_tests.helpers import copy_timeline, default_spec, load_trips
from mlops_assets_tests.test_alerting import ReloadRecorder
from mlops_core.schema import DURATION
from mlops_core.specs import ModelSpec

SPEC = default_spec()


def spec_with(**changes) -> ModelSpec:
    raw = SPEC.model_dump(mode="json", exclude={"source_file"})
    for section, values in changes.items():
        raw[section].update(values)
    return ModelSpec.model_validate(raw)


def days(first: date, last: date) -> list[str]:
    return [str(first + timedelta(days=i)) for i in range((last - first).days + 1)]


def outbox(home) -> list[email.message.EmailMessage]:
    return [
        email.message_from_bytes(p.read_bytes(), policy=email.policy.default)
        for p in sorted((home / "outbox").glob("*.eml"))
    ]


@pytest.fixture
def on_postgres(home, settings, postgres_url):
    """The session's v1 (trained on 2022-01, in effect from 2022-02-01) in a PostgreSQL
    metrics DB, and the settings that use it."""
    copy_timeline(SPEC.name, settings.metrics_database_url, postgres_url)
    return dataclasses.replace(settings, metrics_database_url=postgres_url)


@pytest.mark.postgres
def test_the_policy_waits_retrains_once_cools_down_and_stops_day_by_day(on_postgres, home):
    # Every February day breaches (threshold 0.01); a retrain waits for 5 days after the change;
    # candidates are refused (min_rows_per_column out of reach) so the cool-down and the attempts
    # show: attempt 1 on 02-05, the cool-down to 02-07, attempt 2 then, none after.
    spec = spec_with(
        monitoring={"rules": [{"metric": "prediction_drift", "op": ">", "threshold": 0.01, "retrain": True}]},
        retraining={
            "window_days": 14, "holdout_days": 3, "days_after_change": 5, "cooldown_days": 2,
            "max_attempts": 2, "min_rows": 2000, "min_rows_per_column": 10**6,
        },
    )  # fmt: skip
    defs = build_defs([spec], build_resources(on_postgres))
    driver = Driver(spec, defs, dg.DagsterInstance.ephemeral())
    ticks = {}
    for day in days(date(2022, 2, 1), date(2022, 2, 9)):
        assert driver.monitor(day, day)["success"], day
        ticks[day] = driver.tick()
    requested = {day: t["requests"] for day, t in ticks.items() if t["requests"]}
    assert list(requested) == ["2022-02-05", "2022-02-07"]
    (first,) = requested["2022-02-05"]
    assert (first["run_key"], first["partition"]) == (
        "retrain:green_taxi_duration:2022-02-01:1",
        "2022-02-05",
    )
    assert first["tags"]["mlops/episode_start"] == "2022-02-01" and first["tags"]["mlops/attempt"] == "1"
    assert first["run"]["success"] and first["run"]["metadata"]["decision"] == "not promoted"
    assert "a column; retraining.min_rows_per_column is 1e+06" in first["run"]["metadata"]["decision_reason"]
    (second,) = requested["2022-02-07"]
    assert second["run_key"] == "retrain:green_taxi_duration:2022-02-01:2" and second["run"]["success"]
    for day in ("2022-02-01", "2022-02-04"):
        assert (
            "waiting for data after the change, a retrain on 2022-02-05 at the earliest" in ticks[day]["skip"]
        )
    assert "cools down until 2022-02-07" in ticks["2022-02-06"]["skip"]
    for day in ("2022-02-08", "2022-02-09"):
        assert "2 retrain(s) tried, none promoted (retraining.max_attempts); no more" in ticks[day]["skip"]

    db = R.metrics_db(on_postgres)
    decisions = DecisionStore(db).all(spec.name)
    assert [(d["decision_key"], d["kind"], d["attempt"]) for d in decisions] == [
        ("retrain:2022-02-05", "not_promoted", 1),
        ("retrain:2022-02-07", "not_promoted", 2),
    ]
    emails = len(outbox(home))
    # A restarted daemon (no cursor): nothing new requested, nothing emailed twice.
    driver.cursor = None
    restart = driver.tick()
    assert restart["requests"] == [] and "no more" in restart["skip"]
    assert len(outbox(home)) == emails
    assert R.model_registry(on_postgres).champion(spec.name) == "1"


@pytest.mark.postgres
def test_a_refusal_is_a_recorded_decision_and_the_run_succeeds(on_postgres):
    """A window the sensor could not foresee as refused (the rows are there, but too few for
    min_rows once cleaned): the run succeeds, the decision is recorded, nothing registered."""
    spec = spec_with(retraining={"min_rows": 10**6})
    defs = build_defs([spec], build_resources(on_postgres))
    driver = Driver(spec, defs, dg.DagsterInstance.ephemeral())
    run = driver.run("retrain_duration_model", [driver.key("retrained_model")], partition="2022-01-31")
    assert run["success"] and run["metadata"]["decision"] == "refused"
    (decision,) = DecisionStore(R.metrics_db(on_postgres)).all(spec.name)
    assert decision["kind"] == "refused" and "fewer than retraining.min_rows=1000000" in decision["reason"]
    assert decision["version"] is None


def test_a_candidate_that_predicts_like_the_champion_is_a_tie_and_refused(home, settings):
    registry, db = R.model_registry(settings), R.metrics_db(settings)
    champion = registry.load(SPEC.name, "1", SPEC.training.artifact)
    twin = dataclasses.replace(champion, info=dataclasses.replace(champion.info, fingerprint="twin-of-v1"))
    twin.info.window_end = "2022-02-10"  # newer data than the champion's, so only the scores decide
    registered = registry.register(twin, artifact=SPEC.training.artifact, params={}, tags={"source": "test"})
    holdout = load_trips(SPEC, settings.trip_data_dir, "2022-02-01", "2022-02-08")
    decision = consider(
        SPEC,
        candidate=twin,
        registered=registered,
        holdout_rows=holdout,
        earliest_effective=date(2022, 2, 11),
        registry=registry,
        db=db,
        about=About(key="retrain:2022-02-10", day=date(2022, 2, 10)),
    )
    assert not decision.promoted
    c = decision.comparison
    assert c.diff == 0 and c.low == 0 and c.high == 0
    assert decision.reason.startswith("no better than the champion beyond noise")
    assert registry.champion(SPEC.name) == "1"
    assert DecisionStore(db).all(SPEC.name)[-1]["kind"] == "not_promoted"


def shuffled_model(settings) -> M.ModelBundle:
    """The spec's model trained on January 2022 with its durations shuffled: worse than v1 on
    every day, and registered under its own fingerprint."""
    month = load_trips(SPEC, settings.trip_data_dir, "2022-01-01", "2022-02-01")
    rng = np.random.default_rng(7)
    month[DURATION] = rng.permutation(month[DURATION].to_numpy())
    bundle, _ = M.train_on_month(SPEC, month)
    return bundle


@pytest.mark.postgres
def test_a_worse_champion_is_watched_in_shadow_and_rolled_back_once(on_postgres, home, monkeypatch):
    recorder = ReloadRecorder()
    monkeypatch.setenv("SERVING_RELOAD_TOKEN", "reload-token")
    settings = dataclasses.replace(on_postgres, serving_url=recorder.url, serving_token_set=True)
    registry, db = R.model_registry(settings), R.metrics_db(settings)
    bad = shuffled_model(settings)
    registered = registry.register(bad, artifact=SPEC.training.artifact, params={}, tags={"source": "test"})
    # Promoted by hand from 2022-02-04, as an operator would: the one way the champion changes.
    decision = Decision(
        True, registered.version, bad.info.holdout.rmse, "1", None, date(2022, 2, 4), "promoted by the test"
    )
    set_champion(SPEC, decision, registry=registry, db=db, window_end=date(2022, 1, 31), previous="1")

    defs = build_defs([SPEC], build_resources(settings))
    driver = Driver(SPEC, defs, dg.DagsterInstance.ephemeral())
    try:
        for day in days(date(2022, 2, 4), date(2022, 2, 7)):
            assert driver.monitor(day, day)["success"], day
            driver.tick()
    finally:
        recorder.close()

    rows = {str(r.timestamp.date()): r for r in DailyMetricsStore(db).rows(SPEC.name)}
    for day in ("2022-02-04", "2022-02-05", "2022-02-06"):
        row = rows[day]
        assert (row.model_version, row.shadow_version) == (registered.version, "1")
        assert row.shadow_n == row.n_scored and row.shadow_rmse < row.rmse  # v1 was better
    # The third shadow day (shadow_min_days) decides: rolled back from the next day on.
    assert (rows["2022-02-07"].model_version, rows["2022-02-07"].shadow_version) == ("1", None)
    timeline = TimelineStore(db).entries(SPEC.name)
    last = timeline[-1]
    assert (last["model_version"], last["kind"], last["previous_version"]) == (
        "1",
        "rolled_back",
        registered.version,
    )
    assert last["effective_from"] == date(2022, 2, 7)
    assert last["rmse_diff"] < 0 and last["rmse_diff_high"] < 0  # v1 better than the one it replaces
    assert registry.champion(SPEC.name) == "1"
    assert registry.version_tags(SPEC.name, registered.version)["decision"] == "rolled_back"
    assert recorder.calls == [{"path": "/reload", "auth": "Bearer reload-token"}]

    rollbacks = [m for m in outbox(home) if "rolled back" in m["Subject"]]
    assert [m["Subject"] for m in rollbacks] == [
        f"[mlops_assets] green_taxi_duration: rolled back v{registered.version} to v1"
    ]
    body = rollbacks[0].get_content()
    assert f"Rolled back v{registered.version} to v1 on 2022-02-06, in effect from 2022-02-07" in body
    assert "over the shadow days after its promotion" in body
    (rolled,) = [d for d in DecisionStore(db).all(SPEC.name) if d["kind"] == "rolled_back"]
    assert rolled["notify_status"] == "sent" and rolled["rmse_diff_low"] > 0

    # A restarted daemon and a re-run of the decisive day: no second rollback, no second email.
    driver.cursor = None
    driver.tick()
    assert driver.monitor("2022-02-06", "2022-02-06")["success"]
    driver.tick()
    assert len([m for m in outbox(home) if "rolled back" in m["Subject"]]) == 1
    assert len([d for d in DecisionStore(db).all(SPEC.name) if d["kind"] == "rolled_back"]) == 1
