"""Model quality from ground truth, a drift method that cannot flip, and alert rules.

Real components: the monitoring assets on real TLC days (the session's trained v1), the
predictions they store, Evidently called as the assets call it, scipy for the reference
figures, the metrics DB (SQLite; PostgreSQL for the migration), real Dagster instances and
the real sensor definition evaluated with ``dg.build_sensor_context``. The sensor tests write
``dummy_metrics`` rows directly (the table is their input; the monitoring tests make it).
"""

import dataclasses
import email
import email.policy
import json
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
from scipy import stats

from mlops_assets import constants as C
from mlops_assets import resources as R
from mlops_assets.alerting.sensor import sensor_name
from mlops_assets.alerting.store import AlertStore
from mlops_assets.definitions import build_defs
from mlops_assets.lib.storage.engine import MetricsDB, day_timestamp, utcnow
from mlops_assets.lib.storage.migrate import migrate
from mlops_assets.monitoring import evidently_metrics as drift
from mlops_assets.monitoring.store import DailyMetricsStore
from mlops_assets.training.retrain_asset import RETRAIN_TAG, TRIGGER_RULE_TAG, TRIGGER_VALUE_TAG
from mlops_assets.training.store import TimelineStore
from mlops_assets_tests.helpers import default_spec, load_trips, register_champion, train_month
from mlops_assets_tests.test_monitoring import monitor
from mlops_core.daily_metrics import DailyMetrics
from mlops_core.specs import DRIFT_METHODS, ModelSpec, SpecError, load_spec

SPEC = default_spec()


def spec_with(**monitoring) -> ModelSpec:
    """The default spec with other monitoring settings (rules, method, threshold)."""
    raw = SPEC.model_dump()
    raw["monitoring"] = monitoring
    return ModelSpec.model_validate(raw)


# --- daily quality on real days ---------------------------------------------------------------
def stored_predictions(resources: dict, day: str) -> pd.DataFrame:
    path = resources[C.PARQUET_IO].path_for(dg.AssetKey([SPEC.name, C.PREDICTIONS]), day)
    return pd.read_parquet(path)


def test_daily_quality_equals_numpy_and_uses_the_holdout_of_the_model_in_effect(
    home, settings, resources, trip_data_dir, report_figure
):
    """rmse, mae and mean_error of each day equal numpy on the predictions the asset stored;
    rmse_ratio divides by the holdout RMSE of v1 before the promotion and of v2 after it."""
    defs = build_defs([SPEC], resources)
    db = R.metrics_db(settings)
    registry = R.model_registry(settings)
    v2_bundle = train_month(SPEC, trip_data_dir, "2021-03")
    v2 = register_champion(SPEC, v2_bundle, registry)
    TimelineStore(db).record(SPEC.name, v2.version, datetime(2022, 2, 4).date(), reason="test promotion")
    result = monitor(defs, "2022-02-01", "2022-02-05")
    assert result.success

    holdout = {"1": registry.load(SPEC.name, "1", SPEC.training.artifact).info.holdout.rmse}
    holdout[v2.version] = v2_bundle.info.holdout.rmse
    assert holdout["1"] != pytest.approx(holdout[v2.version], rel=1e-3)
    rows = {
        r["timestamp"].date().isoformat(): r
        for r in [r.as_dict() for r in DailyMetricsStore(db).rows(SPEC.name)]
    }
    assert [rows[d]["model_version"] for d in sorted(rows)] == ["1", "1", "1", v2.version, v2.version]
    for day, row in sorted(rows.items()):
        frame = stored_predictions(resources, day)
        scored = frame[frame["prediction"].notna()]
        error = scored["prediction"].to_numpy() - scored["duration"].to_numpy()
        assert row["rmse"] == pytest.approx(float(np.sqrt(np.mean(error**2))), abs=1e-9)
        assert row["mae"] == pytest.approx(float(np.mean(np.abs(error))), abs=1e-9)
        assert row["mean_error"] == pytest.approx(float(np.mean(error)), abs=1e-9)
        assert row["holdout_rmse"] == pytest.approx(holdout[row["model_version"]], abs=1e-12)
        assert row["rmse_ratio"] == pytest.approx(row["rmse"] / holdout[row["model_version"]], abs=1e-12)
        assert row["drift_method"] == "wasserstein"
        report_figure(
            f"quality {day} (v{row['model_version']}): rmse {row['rmse']:.3f}, mae {row['mae']:.3f}, "
            f"bias {row['mean_error']:+.3f}, rmse_ratio {row['rmse_ratio']:.3f} on {len(scored)} trips"
        )

    # Numbers per partition, so the asset page plots them over days.
    drift_key = dg.AssetKey([SPEC.name, C.DRIFT_METRICS])
    per_day = {
        e.event_specific_data.materialization.partition: e.event_specific_data.materialization.metadata
        for e in result.get_asset_materialization_events()
        if e.asset_key == drift_key
    }
    for day, md in per_day.items():
        for column in ("rmse", "mae", "mean_error", "rmse_ratio"):
            assert isinstance(md[column], dg.FloatMetadataValue)
            assert md[column].value == pytest.approx(rows[day][column], abs=1e-12)
        assert md["drift_method"].value == "wasserstein"
    checks = {
        c.partition: c for c in result.get_asset_check_evaluations() if c.check_name == C.CHECK_MODEL_QUALITY
    }
    assert sorted(checks) == sorted(rows)  # one result per day, on the day's partition
    # no day of early February is 1.5 times worse than the holdout
    assert all(c.passed for c in checks.values()), {d: c.description for d, c in checks.items()}
    assert checks["2022-02-04"].metadata["rmse_ratio"].value == pytest.approx(
        rows["2022-02-04"]["rmse_ratio"]
    )


def test_a_day_without_scored_rows_has_null_quality(home, settings):
    bundle = R.model_registry(settings).load(SPEC.name, "1", SPEC.training.artifact)
    day = bundle.reference.head(50).copy()
    day["prediction"] = np.nan
    metrics, _ = drift.compute(day, bundle.reference, bundle.features)
    assert (metrics.rmse, metrics.mae, metrics.mean_error, metrics.prediction_drift) == (None,) * 4
    assert metrics.num_drifted_columns is not None  # the features are still judged
    empty, snapshot = drift.compute(day.head(0), bundle.reference, bundle.features)
    assert snapshot is None and empty.rmse is None and empty.n_rows == 0


def test_a_500_row_reference_still_gives_the_wasserstein_distance(home, settings, trip_data_dir):
    """Evidently would switch to a K-S p-value at this size; the pinned method does not."""
    from evidently import Dataset, Report
    from evidently.metrics import ValueDrift

    bundle = R.model_registry(settings).load(SPEC.name, "1", SPEC.training.artifact)
    reference = bundle.reference.sample(500, random_state=11).reset_index(drop=True)
    day = load_trips(SPEC, trip_data_dir, "2022-02-05", "2022-02-06")
    day = day.assign(prediction=bundle.predict(day))
    metrics, _ = drift.compute(day, reference, bundle.features)
    ref, cur = reference["prediction"].to_numpy(), day["prediction"].dropna().to_numpy()
    expected = stats.wasserstein_distance(ref, cur) / max(float(np.std(ref)), 0.001)
    assert metrics.drift_method == "wasserstein"
    assert metrics.prediction_drift == pytest.approx(expected, abs=1e-9)

    # What an unpinned ValueDrift gives on the same 500 rows: a p-value, not a distance.
    definition = drift.data_definition(bundle.features)
    snapshot = Report([ValueDrift(column="prediction")]).run(
        Dataset.from_pandas(drift.monitoring_frame(day, bundle.features), data_definition=definition),
        Dataset.from_pandas(drift.monitoring_frame(reference, bundle.features), data_definition=definition),
    )
    (metric,) = snapshot.dict()["metrics"]
    assert "method=K-S p_value" in metric["metric_name"] or "ks" in metric["metric_name"].lower()
    assert metric["value"] == pytest.approx(stats.ks_2samp(ref, cur)[1], abs=1e-9)

    # A pinned p-value method is recorded as such, and its value is scipy's p-value.
    pinned, _ = drift.compute(day, reference, bundle.features, method="ks")
    assert pinned.drift_method == "ks"
    assert pinned.prediction_drift == pytest.approx(stats.ks_2samp(ref, cur)[1], abs=1e-9)


def test_the_drift_method_table_matches_evidentlys_stat_tests():
    """Every method a spec may pin is one of Evidently's numeric tests, and its direction is
    the one Evidently applies (drifted below the threshold for a p-value, above for a distance)."""
    from evidently.legacy.calculations.stattests.registry import get_stattest
    from evidently.legacy.core import ColumnType

    rng = np.random.default_rng(3)
    reference = pd.Series(rng.normal(0, 1, 2000))
    current = pd.Series(rng.normal(0.3, 1.2, 2000))
    for name, kind in DRIFT_METHODS.items():
        test = get_stattest(reference, current, ColumnType.Numerical, name)
        assert ColumnType.Numerical in test.allowed_feature_types, name
        score = test(reference, current, ColumnType.Numerical, None).drift_score
        above = test(reference, current, ColumnType.Numerical, score * 1.5 + 1e-12).drifted
        below = test(reference, current, ColumnType.Numerical, score * 0.5).drifted
        # A p-value is drift below the threshold: drifted when the threshold is above the score.
        assert (above, below) == ((True, False) if kind == "p_value" else (False, True)), name


# --- rules in the spec ------------------------------------------------------------------------
GOOD = SPEC.source_file


@pytest.mark.parametrize(
    ("monitoring", "message"),
    [
        ("{rules: [{metric: rmse_ration, op: '>', threshold: 1.2}]}", "monitoring.rules.0.metric"),
        ("{rules: [{metric: rmse_ratio, op: '>='}]}", "monitoring.rules.0.op"),
        ("{rules: [{metric: rmse_ratio, op: '>'}]}", "monitoring.rules.0.threshold: Field required"),
        ("{rules: [{metric: mae, op: '>', threshold: 5, for_days: 0}]}", "monitoring.rules.0.for_days"),
        ("{rules: [{metric: mae, op: '>', threshold: 5, min_rows: -1}]}", "monitoring.rules.0.min_rows"),
        ("{rules: [{metric: mae, op: '>', threshold: 5, colour: red}]}", "monitoring.rules.0.colour"),
        ("{drift_method: kolmogorov}", "drift_method 'kolmogorov' is not one of Evidently's numeric"),
        (
            "{drift_method: ks, drift_threshold: 0.05, rules: [{metric: prediction_drift, op: '>'}]}",
            "rules[0].op: '>' on prediction_drift contradicts drift_method 'ks'",
        ),
        (
            "{rules: [{metric: mae, op: '>', threshold: 5}, {metric: mae, op: '>', threshold: 7}]}",
            "rules[1]: a second rule with id 'mae'",
        ),
    ],
)
def test_bad_rules_fail_at_load_naming_the_file_and_field(tmp_path, monitoring, message):
    text = Path(GOOD).read_text()
    start = text.index("\nmonitoring:")
    end = text.index("\nretraining:")
    path = tmp_path / "green_taxi_duration.yaml"
    path.write_text(text[:start] + f"\nmonitoring: {monitoring}" + text[end:])
    with pytest.raises(SpecError) as info:
        load_spec(path)
    assert str(path) in str(info.value)
    assert message in str(info.value)


def test_the_default_spec_keeps_the_original_rule_and_adds_a_quality_rule():
    drift_rule, quality = SPEC.monitoring.rules
    assert (drift_rule.metric, drift_rule.op, drift_rule.threshold) == ("prediction_drift", ">", 0.20)
    assert (drift_rule.for_days, drift_rule.min_rows, drift_rule.retrain) == (1, 0, True)
    assert SPEC.drift_method == "wasserstein"
    assert quality.describe() == "rmse_ratio > 1.50 for 2 days (days with >= 500 trips)"
    assert quality.retrain
    # DRIFT_THRESHOLD still sets the original rule's threshold.
    assert default_spec(0.35).monitoring.drift_rule().threshold == 0.35
    # A p-value method breaches below its threshold when the rule does not say.
    ks = spec_with(drift_method="ks", drift_threshold=0.05)
    assert ks.monitoring.drift_rule().condition() == "prediction_drift < 0.05"


# --- the sensor ------------------------------------------------------------------------------
def put(db: MetricsDB, days: dict[str, dict], version: str = "1") -> None:
    """dummy_metrics rows for ``days`` (day -> the columns that differ from a quiet day)."""
    now = utcnow()
    DailyMetricsStore(db).upsert(
        DailyMetrics(
            **{
                "model_name": SPEC.name,
                "timestamp": day_timestamp(day),
                "model_version": version,
                "prediction_drift": 0.05,
                "num_drifted_columns": 0,
                "share_missing_values": 0.0,
                "n_rows": 2000,
                "n_scored": 2000,
                "drift_threshold": 0.2,
                "rmse": 8.0,
                "mae": 5.0,
                "mean_error": 0.1,
                "rmse_ratio": 1.0,
                "holdout_rmse": 8.0,
                "drift_method": "wasserstein",
                "computed_at": now,
                **values,
            }
        )
        for day, values in days.items()
    )


def tick(spec, resources, instance, cursor=None):
    defs = build_defs([spec], resources)
    sensor = defs.resolve_sensor_def(sensor_name(spec))
    with dg.build_sensor_context(instance=instance, cursor=cursor, resources=defs.resources) as context:
        return sensor(context)


def outbox(home) -> list[email.message.EmailMessage]:
    return (
        [
            email.message_from_bytes(p.read_bytes(), policy=email.policy.default)
            for p in sorted((home / "outbox").glob("*.eml"))
        ]
        if (home / "outbox").is_dir()
        else []
    )


def breach_lines(msg) -> list[str]:
    return [line for line in plain(msg).splitlines() if line.startswith("Threshold breach")]


def plain(msg) -> str:
    return msg.get_body(preferencelist=("plain",)).get_content()


QUALITY_2_DAYS = {
    "metric": "rmse_ratio",
    "op": ">",
    "threshold": 1.2,
    "for_days": 2,
    "min_rows": 500,
    "retrain": True,
}


def test_for_days_a_spike_is_no_breach_two_days_are_one_once(isolated_env, settings, resources):
    # retrain at once: the request names the breach day itself (the retraining policy's wait
    # for data after the change is test_retraining_policy.py's)
    spec = spec_with(rules=[{**QUALITY_2_DAYS, "retrain": "at_once"}])
    db = R.metrics_db(settings)
    instance = dg.DagsterInstance.ephemeral()
    put(
        db,
        {
            "2022-02-01": {"rmse_ratio": 1.31},
            "2022-02-02": {"rmse_ratio": 1.0},
            "2022-02-03": {"rmse_ratio": 1.25},
        },
    )
    first = tick(spec, resources, instance)
    assert not first.run_requests and AlertStore(db).all(SPEC.name) == []
    assert outbox(isolated_env) == []

    # The next day is also above 1.2: two days running, one breach, on the second day.
    put(db, {"2022-02-04": {"rmse_ratio": 1.312}})
    second = tick(spec, resources, instance, first.cursor)
    (alert,) = AlertStore(db).all(SPEC.name)
    assert (alert["rule"], alert["timestamp"], alert["value"]) == ("rmse_ratio", datetime(2022, 2, 4), 1.312)
    (msg,) = outbox(isolated_env)
    assert breach_lines(msg) == ["Threshold breach rmse_ratio (>1.20): 2022-02-04 00:00 — 1.3120"]
    assert (
        msg["Subject"] == "[FIRING] green_taxi_duration: rmse_ratio > 1.20 opened 2022-02-04 (worst 1.3120)"
    )
    (request,) = second.run_requests  # a quality-only breach requests a retrain
    assert request.partition_key == "2022-02-04"
    assert request.tags[TRIGGER_RULE_TAG] == "rmse_ratio > 1.20"
    assert request.tags[TRIGGER_VALUE_TAG] == "1.3120"

    # Ticks from scratch (a restarted daemon) and a re-computed day alert nothing again.
    tick(spec, resources, instance, None)
    put(db, {"2022-02-03": {"rmse_ratio": 1.25}, "2022-02-04": {"rmse_ratio": 1.312}})
    tick(spec, resources, instance, second.cursor)
    assert len(outbox(isolated_env)) == 1 and len(AlertStore(db).all(SPEC.name)) == 1

    # A re-computed earlier day can complete a later day's run: 02-05 was alone, then 02-06...
    put(db, {"2022-02-06": {"rmse_ratio": 1.4}, "2022-02-07": {"rmse_ratio": 1.0}})
    cursor = tick(spec, resources, instance, None).cursor
    assert len(AlertStore(db).all(SPEC.name)) == 1
    put(db, {"2022-02-05": {"rmse_ratio": 1.5}})  # ...02-05 re-computed above: 04-05-06 in a row
    tick(spec, resources, instance, cursor)
    assert [a["timestamp"].day for a in AlertStore(db).all(SPEC.name)] == [4, 5, 6]


def test_min_rows_a_small_day_is_recorded_never_alerted(isolated_env, settings, resources):
    spec = spec_with(rules=[{**QUALITY_2_DAYS, "for_days": 1}])
    db = R.metrics_db(settings)
    put(db, {"2022-02-01": {"rmse_ratio": 2.0, "n_rows": 499, "n_scored": 499}})
    result = tick(spec, resources, dg.DagsterInstance.ephemeral())
    assert AlertStore(db).all(SPEC.name) == [] and not result.run_requests
    assert "no new breach in 1 new row(s)" in result.skip_reason.skip_message
    assert DailyMetricsStore(db).rows(SPEC.name)[0].rmse_ratio == 2.0  # recorded all the same


def test_one_email_lists_every_rules_breaches_and_retrain_follows_the_flag(isolated_env, settings, resources):
    spec = spec_with(
        rules=[
            {"metric": "prediction_drift", "retrain": False},
            {**QUALITY_2_DAYS, "for_days": 1, "threshold": 1.2, "retrain": "at_once"},
        ]
    )
    db = R.metrics_db(settings)
    instance = dg.DagsterInstance.ephemeral()
    # Drift alone breaches: emailed, but its rule does not request a retrain.
    put(db, {"2022-02-18": {"prediction_drift": 0.2341}})
    first = tick(spec, resources, instance)
    assert not first.run_requests
    (msg,) = outbox(isolated_env)
    assert breach_lines(msg) == ["Threshold breach (>0.20): 2022-02-18 00:00 — 0.2341"]

    # Both rules on the next day: the drift incident goes on (announced already: no email for
    # it), the quality rule's opens (one email), and a retrain for quality.
    put(db, {"2022-02-19": {"prediction_drift": 0.2341, "rmse_ratio": 1.312}})
    second = tick(spec, resources, instance, first.cursor)
    msgs = outbox(isolated_env)
    assert len(msgs) == 2
    assert breach_lines(msgs[1]) == ["Threshold breach rmse_ratio (>1.20): 2022-02-19 00:00 — 1.3120"]
    assert msgs[1]["Subject"] == (
        "[FIRING] green_taxi_duration: rmse_ratio > 1.20 opened 2022-02-19 (worst 1.3120)"
    )
    assert [(a["rule"], a["timestamp"].day) for a in AlertStore(db).all(SPEC.name)] == [
        ("prediction_drift", 18),
        ("prediction_drift", 19),
        ("rmse_ratio", 19),
    ]
    body = plain(msgs[1])
    assert "[FIRING] rmse_ratio > 1.20 (days with >= 500 trips): the day's RMSE over the holdout" in body
    assert "Retrain now: requested a retrain for 2022-02-19 (rmse_ratio > 1.20: 1.3120, at once)" in body
    (request,) = second.run_requests
    assert request.tags[TRIGGER_RULE_TAG] == "rmse_ratio > 1.20" and request.tags[RETRAIN_TAG] == SPEC.name


def test_a_p_value_method_breaches_below_its_threshold(isolated_env, settings, resources):
    spec = spec_with(drift_method="ks", drift_threshold=0.05)
    db = R.metrics_db(settings)
    put(db, {"2022-02-01": {"prediction_drift": 0.5}, "2022-02-02": {"prediction_drift": 0.01}})
    result = tick(spec, resources, dg.DagsterInstance.ephemeral())
    (alert,) = AlertStore(db).all(SPEC.name)
    assert alert["timestamp"] == datetime(2022, 2, 2)
    (msg,) = outbox(isolated_env)
    assert breach_lines(msg) == ["Threshold breach (<0.05): 2022-02-02 00:00 — 0.0100"]
    assert not result.run_requests  # the drift rule's retrain waits for data after the change
    assert "episode since 2022-02-02: waiting for data after the change" in result.skip_reason.skip_message


def test_the_skip_message_counts_rows_after_the_cursor_not_the_overlap(isolated_env, settings, resources):
    """Rows inside the look-back overlap were counted as new again (272 "new" rows for 31 days)."""
    db = R.metrics_db(settings)
    instance = dg.DagsterInstance.ephemeral()
    put(db, {f"2022-03-{d:02d}": {} for d in range(1, 32)})
    first = tick(SPEC, resources, instance)
    assert "no new breach in 31 new row(s)" in first.skip_reason.skip_message
    put(db, {"2022-04-01": {}})  # one more row, seconds later: the first 31 are in the overlap
    second = tick(SPEC, resources, instance, first.cursor)
    assert "no new breach in 1 new row(s)" in second.skip_reason.skip_message


def test_a_cursor_with_a_timezone_offset_is_read_as_utc(isolated_env, settings, resources):
    """A cursor written with an offset made the sensor compare aware and naive datetimes."""
    db = R.metrics_db(settings)
    put(db, {"2022-02-01": {"prediction_drift": 0.3}})
    computed = DailyMetricsStore(db).rows(SPEC.name)[0].computed_at
    # Ten minutes before the row, written as Paris winter time (+01:00).
    aware = (computed - timedelta(minutes=10)).replace(tzinfo=UTC).astimezone(timezone(timedelta(hours=1)))
    cursor = json.dumps({"computed_at": aware.isoformat()})
    assert "+01:00" in cursor
    result = tick(SPEC, resources, dg.DagsterInstance.ephemeral(), cursor)
    assert json.loads(result.cursor)["computed_at"] == computed.isoformat()
    assert [a["timestamp"] for a in AlertStore(db).all(SPEC.name)] == [datetime(2022, 2, 1)]


@pytest.mark.postgres
def test_breaches_alerted_before_rules_are_not_alerted_again(isolated_env, settings, resources, postgres_url):
    """An upgraded database: drift_alerts rows become alerts of the prediction_drift rule."""
    engine = sa.create_engine(postgres_url)
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "create table drift_alerts (id bigserial primary key, model_name varchar(100) not null, "
                "timestamp timestamp not null, prediction_drift float not null, drift_threshold float "
                "not null, model_version varchar(50), detected_at timestamp not null, status varchar(16) "
                "not null, attempts int not null default 0, last_error text, sent_at timestamp, "
                "message_id varchar(255), constraint uq_drift_alerts_model_timestamp unique "
                "(model_name, timestamp))"
            )
        )
        conn.execute(
            sa.text(
                "insert into drift_alerts (model_name, timestamp, prediction_drift, drift_threshold, "
                "model_version, detected_at, status, attempts, sent_at, message_id) values "
                "(:m, '2022-02-02', 0.31, 0.2, '1', now(), 'sent', 1, now(), '<old@x>')"
            ),
            {"m": SPEC.name},
        )
    changes = migrate(engine)
    assert "copied 1 row(s) of drift_alerts into alerts" in changes
    engine.dispose()

    pg = dataclasses.replace(settings, metrics_database_url=postgres_url)
    db = R.metrics_db(pg)
    (old,) = AlertStore(db).all(SPEC.name)
    assert (old["rule"], old["value"], old["status"], old["retrain"]) == (
        "prediction_drift",
        0.31,
        "sent",
        True,
    )
    put(db, {"2022-02-02": {"prediction_drift": 0.31}, "2022-02-03": {"prediction_drift": 0.44}})
    tick(SPEC, R.build_resources(pg), dg.DagsterInstance.ephemeral())
    # 02-03 continues the incident the old alert of 02-02 became (announced then): no email
    # until its reminder lists it (pending till then), and 02-02 is never alerted again
    assert outbox(isolated_env) == []
    alerts = AlertStore(db).all(SPEC.name)
    assert [(a["timestamp"].day, a["status"]) for a in alerts] == [(2, "sent"), (3, "pending")]
    assert len({a["incident_id"] for a in alerts}) == 1
