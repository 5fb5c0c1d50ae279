"""Daily monitoring on real data: predictions → drift_metrics → dummy_metrics.

Real TLC files, a real MLflow store, real SQLite and PostgreSQL metrics databases (a
throwaway PostgreSQL database per test), Evidently for real. ``prediction_drift`` is checked
against Evidently called directly in the test on frames built independently of the assets.
The definitions get this test's ``Settings`` values (metrics DB URL, trip folder, drift
threshold through the spec), never the environment.
"""

import dataclasses
import json
import math
import re
from datetime import date

import dagster as dg
import numpy as np
import pandas as pd
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa
from evidently import DataDefinition, Dataset, Report
from evidently.legacy.metrics import DataDriftTable
from evidently.legacy.pipeline.column_mapping import ColumnMapping
from evidently.legacy.report import Report as LegacyReport
from evidently.metrics import DatasetMissingValueCount, DriftedColumnsCount, ValueDrift

from mlops_assets import constants as C
from mlops_assets import resources as R
from mlops_assets.definitions import build_defs
from mlops_assets.lib.storage.engine import MetricsDB
from mlops_assets.lib.storage.migrate import migrate
from mlops_assets.monitoring.store import DailyMetricsStore, dummy_metrics
from mlops_assets.resources import build_resources
from mlops_assets.training.model import ModelBundle
from mlops_assets.training.store import TimelineStore
from mlops_assets_tests.helpers import (
    copy_timeline,
    default_spec,
    failure_message,
    load_trips,
    register_champion,
    train_month,
)

SPEC = default_spec()
MONITORING = [C.TRIPS, C.PREDICTIONS, C.DRIFT_METRICS, C.DUMMY_METRICS]


def key(name: str) -> dg.AssetKey:
    return dg.AssetKey([SPEC.name, name])


def monitor(defs, first: str, last: str | None = None, **kw):
    tags = {"dagster/asset_partition_range_start": first, "dagster/asset_partition_range_end": last or first}
    return dg.materialize(
        list(defs.assets),
        selection=[key(n) for n in MONITORING],
        resources=defs.resources,
        tags=tags,
        raise_on_error=False,
        **kw,
    )


def rows(db: MetricsDB) -> pd.DataFrame:
    return pd.DataFrame([r.as_dict() for r in DailyMetricsStore(db).rows(SPEC.name)]).set_index("timestamp")


def independent_metrics(data_dir, bundle: ModelBundle, day: str) -> dict:
    """Evidently called directly on frames built here from the raw files (not the assets)."""
    next_day = str((pd.Timestamp(day) + pd.Timedelta(days=1)).date())
    trips = load_trips(SPEC, data_dir, day, next_day)
    cols = [*SPEC.features.categorical, *SPEC.features.numerical]
    current = trips[cols].reset_index(drop=True)
    raw = bundle.pipeline.predict(
        [
            {
                "PULocationID": str(int(r.PULocationID)),
                "DOLocationID": str(int(r.DOLocationID)),
                "trip_distance": float(r.trip_distance),
            }
            for r in trips.itertuples()
        ]
    )
    # Predictions stay inside the durations the spec trains on (1 to 180 minutes).
    durations = SPEC.filters["duration"]
    current["prediction"] = np.clip(raw, durations.min, durations.max)
    reference = bundle.reference[[*cols, "prediction"]]
    definition = DataDefinition(
        numerical_columns=["trip_distance", "prediction"],
        categorical_columns=["PULocationID", "DOLocationID"],
    )
    snapshot = Report(
        [
            ValueDrift(column="prediction"),
            DriftedColumnsCount(columns=cols),
            DatasetMissingValueCount(columns=cols),
        ]
    ).run(
        Dataset.from_pandas(current, data_definition=definition),
        Dataset.from_pandas(reference, data_definition=definition),
    )
    values = [m["value"] for m in snapshot.dict()["metrics"]]
    # Which columns drifted, by another of Evidently's paths: the legacy DataDriftTable.
    table = LegacyReport([DataDriftTable(columns=cols)])
    table.run(
        reference_data=reference[cols],
        current_data=current[cols],
        column_mapping=ColumnMapping(
            numerical_features=["trip_distance"], categorical_features=["PULocationID", "DOLocationID"]
        ),
    )
    by_column = table.as_dict()["metrics"][0]["result"]["drift_by_columns"]
    return {
        "prediction_drift": values[0],
        "num_drifted_columns": values[1]["count"],
        "drifted_columns": [c for c in cols if by_column[c]["drift_detected"]],
        "feature_drift": {c: by_column[c]["drift_score"] for c in cols},
        "share_missing_values": values[2]["share"],
        "n_rows": len(trips),
    }


def test_prediction_drift_matches_evidently_called_directly(
    home, settings, resources, trip_data_dir, report_figure
):
    defs = build_defs([SPEC], resources)
    result = monitor(defs, "2022-02-01", "2022-02-07")
    assert result.success, failure_message(result)
    table = rows(R.metrics_db(settings))
    assert len(table) == 7
    bundle = ModelBundle.load(home / "models" / SPEC.name / "v1")
    events = {
        e.partition: e.event_specific_data.materialization.metadata
        for e in result.get_asset_materialization_events()
        if e.asset_key == key(C.DRIFT_METRICS)
    }
    named = set()
    for day in ("2022-02-01", "2022-02-03", "2022-02-05", "2022-02-06"):
        expected = independent_metrics(trip_data_dir, bundle, day)
        row = table.loc[pd.Timestamp(day)]
        assert row["prediction_drift"] == pytest.approx(expected["prediction_drift"], abs=1e-9, rel=0)
        assert row["num_drifted_columns"] == expected["num_drifted_columns"]
        # The drifted columns by name: the ones Evidently's DataDriftTable finds drifted.
        assert row["drifted_columns"] == ", ".join(expected["drifted_columns"])
        assert len(expected["drifted_columns"]) == expected["num_drifted_columns"]
        named |= set(expected["drifted_columns"])
        md = events[day]
        assert md["drifted_columns"].value == (row["drifted_columns"] or "none")
        for column, score in expected["feature_drift"].items():
            drifted = "yes" if column in expected["drifted_columns"] else "no"
            assert f"| {column} | {score:.4f} | " in md["feature_drift"].value
            assert re.search(rf"\| {column} \| [^\n]* \| {drifted} \|", md["feature_drift"].value)
        assert row["share_missing_values"] == pytest.approx(expected["share_missing_values"], abs=1e-12)
        assert row["n_rows"] == expected["n_rows"] == row["n_scored"]
        assert row["model_version"] == "1"
        report_figure(f"prediction_drift {day} (v1 trained on 2022-01): {row['prediction_drift']:.6f}")

    # These days cover both outcomes: the zones drift against January's reference, distance not.
    assert named == {"PULocationID", "DOLocationID"}
    # per-partition metadata: numeric drift (so the UI plots it), rows, version, report link
    assert len(events) == 7
    md = events["2022-02-03"]
    assert isinstance(md["prediction_drift"], dg.FloatMetadataValue)
    assert md["prediction_drift"].value == table.loc[pd.Timestamp("2022-02-03"), "prediction_drift"]
    assert md["model_version"].value == "1"
    report = home / "reports" / SPEC.name / "2022-02-03.html"
    assert md["report"].value == str(report)
    html = report.read_text()
    assert len(html) < 500_000 and 'src="js/evidently.' in html  # the JS library is shared
    assert (report.parent / "js").is_dir()
    # Its title says which model, day and version it is about, with the day's figures.
    row = table.loc[pd.Timestamp("2022-02-03")]
    title = re.search(r"<title>(.*?)</title>", html).group(1)
    assert title.startswith(f"{SPEC.name} · 2022-02-03 · model v1 · {int(row['n_rows']):,} trips · ")
    assert f"prediction drift {row['prediction_drift']:.4f} (wasserstein)" in title
    assert f"RMSE {row['rmse']:.2f} min ({row['rmse_ratio']:.2f}x its holdout's)" in title
    names = row["drifted_columns"]
    assert title.endswith(f" · drifted feature columns: {names}" if names else " · no drifted feature column")
    # The report shows Evidently's drift test of each feature column (the names, in its JSON).
    for column in [*SPEC.features.categorical, *SPEC.features.numerical]:
        assert f"Value Drift for column {column}" in html
    assert json.dumps(title)[1:-1] in html.split("</title>", 1)[1]  # and heads the report (in its JSON)


def test_backfill_is_one_run_with_one_row_per_day_and_idempotent(home, settings, resources):
    defs = build_defs([SPEC], resources)
    db = R.metrics_db(settings)
    instance = dg.DagsterInstance.ephemeral()
    result = monitor(defs, "2022-02-01", "2022-02-28", instance=instance)
    assert result.success, failure_message(result)
    assert len(instance.get_run_records()) == 1
    first = rows(db)
    assert list(first.index) == list(pd.date_range("2022-02-01", "2022-02-28"))
    assert first["model_version"].eq("1").all()
    drift_checks = [
        c for c in result.get_asset_check_evaluations() if c.check_name == C.CHECK_PREDICTION_DRIFT
    ]
    assert sorted(c.partition for c in drift_checks) == [str(d.date()) for d in first.index]
    assert {c.severity for c in drift_checks} == {dg.AssetCheckSeverity.WARN}

    # Re-materializing a day gives the same values and still one row.
    assert monitor(defs, "2022-02-10").success
    again = rows(db)
    assert len(again) == 28
    cols = ["prediction_drift", "num_drifted_columns", "share_missing_values", "n_rows", "model_version"]
    pd.testing.assert_frame_equal(again[cols], first[cols])
    assert again.loc["2022-02-10", "computed_at"] > first.loc["2022-02-10", "computed_at"]

    # New values (another threshold) replace the old ones; still one row per day.
    result = monitor(build_defs([default_spec(0.05)], resources), "2022-02-10", "2022-02-11")
    assert result.success
    latest = rows(db)
    assert len(latest) == 28
    assert latest.loc["2022-02-10", "drift_threshold"] == 0.05
    assert latest.loc["2022-02-12", "drift_threshold"] == 0.20
    judged = {
        c.partition: c.passed
        for c in result.get_asset_check_evaluations()
        if c.check_name == C.CHECK_PREDICTION_DRIFT
    }
    assert judged == {
        d: bool(latest.loc[d, "prediction_drift"] <= 0.05) for d in ("2022-02-10", "2022-02-11")
    }


def check_history(instance: dg.DagsterInstance, name: str) -> list:
    """Every execution of a check of drift_metrics the instance recorded (all runs)."""
    check_key = dg.AssetCheckKey(key(C.DRIFT_METRICS), name)
    return instance.event_log_storage.get_asset_check_execution_history(check_key, limit=1000)


def partition_status(instance, name: str) -> dict[str, str]:
    """The status of each partition of a check of drift_metrics that counts as current (its
    result targets the partition's latest materialization), as the UI resolves it."""
    check_key = dg.AssetCheckKey(key(C.DRIFT_METRICS), name)
    infos = instance.event_log_storage.get_asset_check_partition_info([check_key])
    return {i.partition_key: i.latest_execution_status.value for i in infos if i.is_current}


def test_checks_are_recorded_per_day_and_a_breach_day_fails(home, settings, resources):
    """One check result per judged day, on that day's partition: a breach day is a failed
    (WARN) drift check of that partition; no run writes rows about days it did not judge."""
    spec = default_spec(0.06)  # Feb 2022 against v1 (trained on 2022-01): some days above 0.06, some not
    defs = build_defs([spec], resources)
    instance = dg.DagsterInstance.ephemeral()
    result = monitor(defs, "2022-02-01", "2022-02-14", instance=instance)
    assert result.success, failure_message(result)
    table = rows(R.metrics_db(settings))
    drift = {str(t.date()): v for t, v in table["prediction_drift"].items()}
    breach_days = sorted(d for d, v in drift.items() if v > 0.06)
    assert 0 < len(breach_days) < 14, drift  # the test needs both kinds of day

    for name in (C.CHECK_PREDICTION_DRIFT, C.CHECK_MODEL_QUALITY):
        history = check_history(instance, name)
        assert sorted(r.partition for r in history) == sorted(drift), name  # one per day, none without one
        assert {r.run_id for r in history} == {result.run_id}
    by_day = {r.partition: r for r in check_history(instance, C.CHECK_PREDICTION_DRIFT)}
    assert sorted(d for d, r in by_day.items() if r.status.value == "FAILED") == breach_days
    assert {r.status.value for d, r in by_day.items() if d not in breach_days} == {"SUCCEEDED"}
    failed = by_day[breach_days[0]].event.dagster_event.event_specific_data
    assert failed.severity == dg.AssetCheckSeverity.WARN and not failed.passed
    assert failed.metadata["prediction_drift"].value == pytest.approx(drift[breach_days[0]])
    assert failed.description.startswith(f"prediction drift {drift[breach_days[0]]:.4f} above 0.06")
    # Each result points at its day's materialization, so it is the day's current status (what
    # the check's Partitions view shows): breach days failed, the others passed, none missing.
    current = partition_status(instance, C.CHECK_PREDICTION_DRIFT)
    assert sorted(d for d, status in current.items() if status == "FAILED") == breach_days
    assert sorted(current) == sorted(drift)

    # Re-judging one day adds one result per check for that day, nothing about the others.
    again = monitor(defs, breach_days[0], instance=instance)
    assert again.success
    rerun = [r for r in check_history(instance, C.CHECK_PREDICTION_DRIFT) if r.run_id == again.run_id]
    assert [(r.partition, r.status.value) for r in rerun] == [(breach_days[0], "FAILED")]
    assert partition_status(instance, C.CHECK_PREDICTION_DRIFT) == current  # still current after it


@pytest.mark.postgres
def test_month_backfill_into_postgres(home, settings, postgres_url):
    copy_timeline(SPEC.name, settings.metrics_database_url, postgres_url)  # v1, in effect from 2022-02-01
    defs = build_defs(
        [SPEC], build_resources(dataclasses.replace(settings, metrics_database_url=postgres_url))
    )
    assert monitor(defs, "2022-02-01", "2022-02-28").success
    assert monitor(defs, "2022-02-14", "2022-02-16").success  # overlapping re-run
    engine = sa.create_engine(postgres_url)
    with engine.connect() as conn:
        count, days = conn.execute(
            sa.text("select count(*), count(distinct timestamp) from dummy_metrics where model_name = :m"),
            {"m": SPEC.name},
        ).one()
        assert count == days == 28
        # "latest row per model" is a backward scan of the unique index, not a table scan
        conn.execute(sa.text("set enable_seqscan = off"))
        plan = "\n".join(
            r[0]
            for r in conn.execute(
                sa.text(
                    "explain select * from dummy_metrics where model_name = 'green_taxi_duration' "
                    "order by timestamp desc limit 1"
                )
            )
        )
    assert "Index Scan Backward using uq_dummy_metrics_model_timestamp" in plan
    sqlite_free = DailyMetricsStore(MetricsDB(url=postgres_url)).latest(SPEC.name)
    assert sqlite_free.timestamp == pd.Timestamp("2022-02-28")


def test_model_in_effect_per_day_and_old_partitions_reproduce(home, settings, resources, trip_data_dir):
    """v1 in effect until 2022-02-03, then v2: each day is scored by its own model, and
    re-running a v1 day after the promotion reproduces the v1 row."""
    defs = build_defs([SPEC], resources)
    db = R.metrics_db(settings)
    assert monitor(defs, "2022-02-01", "2022-02-03").success
    before = rows(db)

    v2 = register_champion(SPEC, train_month(SPEC, trip_data_dir, "2021-03"), R.model_registry(settings))
    TimelineStore(db).record(SPEC.name, v2.version, date(2022, 2, 4), reason="test promotion")
    assert monitor(defs, "2022-02-01", "2022-02-06").success
    after = rows(db)
    assert after["model_version"].tolist() == ["1", "1", "1", v2.version, v2.version, v2.version]
    cols = ["prediction_drift", "num_drifted_columns", "n_rows"]
    pd.testing.assert_frame_equal(after.loc[before.index, cols], before[cols])
    assert not math.isclose(after.iloc[3]["prediction_drift"], before.iloc[2]["prediction_drift"])


def test_days_before_the_first_model_fail_clearly(home, settings, resources):
    result = monitor(build_defs([SPEC], resources), "2022-01-30", "2022-02-01")
    assert not result.success
    assert (
        "green_taxi_duration: no model is in effect on 2022-01-30 .. 2022-01-31; "
        "the first model (v1) is in effect from 2022-02-01" in failure_message(result)
    )
    assert [r.as_dict() for r in DailyMetricsStore(R.metrics_db(settings)).rows(SPEC.name)] == []


def test_a_day_without_trips_is_a_row_that_says_so(home, settings, tmp_path, trip_data_dir):
    folder = tmp_path / "tlc"
    folder.mkdir()
    table = pq.read_table(trip_data_dir / "green_tripdata_2022-02.parquet")
    day = pc.strftime(table.column("lpep_pickup_datetime"), format="%Y-%m-%d")
    pq.write_table(table.filter(pc.not_equal(day, "2022-02-09")), folder / "green_tripdata_2022-02.parquet")
    resources = build_resources(dataclasses.replace(settings, trip_data_dir=folder))
    result = monitor(build_defs([SPEC], resources), "2022-02-08", "2022-02-10")
    assert result.success, failure_message(result)
    table_rows = rows(R.metrics_db(settings))
    empty = table_rows.loc["2022-02-09"]
    assert empty["n_rows"] == 0 and empty["n_scored"] == 0
    for metric in ("prediction_drift", "num_drifted_columns", "share_missing_values", "report_path"):
        assert empty[metric] is None or (isinstance(empty[metric], float) and np.isnan(empty[metric]))
    assert empty["model_version"] == "1"
    assert table_rows.loc["2022-02-10", "prediction_drift"] > 0
    md = next(
        e.event_specific_data.materialization.metadata
        for e in result.get_asset_materialization_events()
        if e.asset_key == key(C.DRIFT_METRICS) and e.partition == "2022-02-09"
    )
    assert md["prediction_drift"].value == "no trips"


def test_database_down_fails_clearly_retries_and_hides_the_password(home, resources):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    down = MetricsDB(
        url=f"postgresql+psycopg2://postgres:s3cret@127.0.0.1:{port}/metrics",
        connect_attempts=2,
        retry_backoff_seconds=0.05,
    )
    defs = build_defs([SPEC], {**resources, C.METRICS_DB: down})
    result = monitor(defs, "2022-02-01")
    assert not result.success
    message = failure_message(result)
    assert (
        "could not create/migrate the tables of the metrics DB at "
        f"postgresql+psycopg2://postgres:***@127.0.0.1:{port}/metrics after 2 attempts" in message
    )
    assert "s3cret" not in message
    assert "s3cret" not in "\n".join(str(e) for e in result.all_events)


@pytest.mark.postgres
def test_a_failure_mid_transaction_leaves_no_partial_rows(home, settings, postgres_url):
    copy_timeline(SPEC.name, settings.metrics_database_url, postgres_url)  # v1, in effect from 2022-02-01
    in_postgres = dataclasses.replace(settings, metrics_database_url=postgres_url)
    resources = build_resources(in_postgres)
    db = R.metrics_db(in_postgres)
    defs = build_defs([SPEC], resources)
    assert monitor(defs, "2022-02-01", "2022-02-03").success
    original = rows(db)
    engine = sa.create_engine(postgres_url)
    with engine.begin() as conn:  # the database refuses one day of the batch
        conn.execute(
            sa.text("""
            create function refuse_feb_5() returns trigger language plpgsql as $$
            begin
              if new.timestamp = '2022-02-05' then raise exception 'disk full (simulated)'; end if;
              return new;
            end $$;
            create trigger refuse before insert or update on dummy_metrics
              for each row execute function refuse_feb_5();
        """)
        )
    result = monitor(build_defs([default_spec(0.33)], resources), "2022-02-01", "2022-02-07")
    assert not result.success
    assert "disk full (simulated)" in failure_message(result)
    after = rows(db)
    assert list(after.index) == list(original.index)  # nothing from 02-04..07
    assert (after["drift_threshold"] == 0.20).all()  # 02-01..03 not half-updated either
    engine.dispose()


@pytest.mark.postgres
def test_schema_is_migrated_without_manual_sql(postgres_url):
    engine = sa.create_engine(postgres_url)
    with engine.begin() as conn:  # an older table, before report_path and dagster_run_id existed
        conn.execute(
            sa.text(
                "create table dummy_metrics (id bigserial primary key, model_name varchar(100) not null, "
                "timestamp timestamp not null, model_version varchar(50), prediction_drift float, "
                "num_drifted_columns int, share_missing_values float, n_rows int not null, "
                "n_scored int not null, drift_threshold float, computed_at timestamp not null, "
                "constraint uq_dummy_metrics_model_timestamp unique (model_name, timestamp))"
            )
        )
        conn.execute(
            sa.text(
                "insert into dummy_metrics (model_name, timestamp, n_rows, n_scored, computed_at) "
                "values ('m', '2022-02-01', 1, 1, now())"
            )
        )
    changes = migrate(engine)
    assert "added column dummy_metrics.report_path" in changes
    assert "added column dummy_metrics.dagster_run_id" in changes
    assert "created table alerts" in changes
    assert "added column dummy_metrics.rmse_ratio" in changes
    assert "added column dummy_metrics.drift_method" in changes
    assert "added column dummy_metrics.drifted_columns" in changes
    assert migrate(engine) == []  # idempotent
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(dummy_metrics)).scalar() == 1
    engine.dispose()
