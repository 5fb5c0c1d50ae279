"""Where the model is wrong (issue 24): the day's error per segment.

* the figures of real days against an independent numpy recomputation from the raw TLC files,
  the TLC's zone lookup and the model artifact (to 1e-9), written by the real monitoring
  assets beside dummy_metrics, idempotent when a day is re-materialized, shown in the
  partition's metadata and the day's report;
* unknown zone IDs, an empty segment, a day with one segment only, a model without per-segment
  holdout figures (pure functions, hand-computed numbers);
* the migration adding ``segment_metrics`` to an existing PostgreSQL metrics DB at 0003;
* the synthetic new district: on every day of it that breaches a rule, the top drop-off
  segment by excess share is the new district's area;
* the alert email naming the segment (the real sensor, a real SMTP server on loopback).
"""

from __future__ import annotations

import math
from datetime import date, datetime

import dagster as dg
import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
from alembic import command

from mlops_assets import constants as C
from mlops_assets import resources as R
from mlops_assets.data.sources import TripSource
from mlops_assets.data.synthetic import NEW_DISTRICT, zone_lookup
from mlops_assets.definitions import build_defs
from mlops_assets.lib.storage import migrate as MIG
from mlops_assets.lib.storage.engine import MetricsDB, day_timestamp, utcnow
from mlops_assets.monitoring import evidently_metrics as E
from mlops_assets.monitoring.scoring import score_day
from mlops_assets.monitoring.segments import segment_rows, segments_markdown, top_segments_lines
from mlops_assets.monitoring.store import SegmentMetricsStore, segment_metrics
from mlops_assets.resources import build_resources
from mlops_assets.training import model as M
from mlops_assets_tests.helpers import default_spec, failure_message
from mlops_assets_tests.test_alerting import SPEC as ALERT_SPEC
from mlops_assets_tests.test_alerting import SmtpServer, put_rows, smtp_port, smtp_settings, tick
from mlops_assets_tests.test_migrations import schema_differences
from mlops_core.bundle import load_pipeline
from mlops_core.segments import TLC_LOOKUP, day_segments, holdout_segments, tlc_zones
from mlops_core.specs import Monitoring, Segment

__all__ = ["smtp_port"]  # the fixture, imported for this module's tests

SPEC = default_spec()
MONITORING = [C.TRIPS, C.PREDICTIONS, C.DRIFT_METRICS, C.DUMMY_METRICS]
DIMENSIONS = ("pickup_borough", "dropoff_borough", "hour_band", "distance_band")


def monitor(defs, first: str, last: str | None = None):
    tags = {"dagster/asset_partition_range_start": first, "dagster/asset_partition_range_end": last or first}
    return dg.materialize(
        list(defs.assets),
        selection=[dg.AssetKey([SPEC.name, n]) for n in MONITORING],
        resources=defs.resources,
        tags=tags,
        raise_on_error=False,
    )


# --- independent recomputation (numpy, raw files, the lookup's CSV, the skops artifact) -----
def raw_trips(data_dir, first: str, end: str) -> pd.DataFrame:
    """Green trips picked up in [first, end), cleaned as the spec says, read here from the raw
    parquet files (not through the trip source)."""
    months = sorted({first[:7], str((pd.Timestamp(end) - pd.Timedelta(seconds=1)).date())[:7]})
    frames = [pd.read_parquet(data_dir / f"green_tripdata_{m}.parquet") for m in months]
    raw = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
    pickup, dropoff = raw["lpep_pickup_datetime"], raw["lpep_dropoff_datetime"]
    minutes = (dropoff - pickup).dt.total_seconds() / 60.0
    keep = (
        (pickup >= pd.Timestamp(first))
        & (pickup < pd.Timestamp(end))
        & (minutes >= 1)
        & (minutes <= 180)
        & (raw["trip_distance"] >= 0)
        & (raw["trip_distance"] <= 80)
    )
    out = raw.loc[keep, ["lpep_pickup_datetime", "PULocationID", "DOLocationID", "trip_distance"]].copy()
    out["duration"] = minutes[keep]
    return out.reset_index(drop=True)


def artifact_predictions(pipeline, trips: pd.DataFrame) -> np.ndarray:
    dicts = [
        {"PULocationID": str(int(pu)), "DOLocationID": str(int(do)), "trip_distance": float(d)}
        for pu, do, d in zip(
            trips["PULocationID"], trips["DOLocationID"], trips["trip_distance"], strict=True
        )
    ]
    return np.clip(pipeline.predict(dicts), 1.0, 180.0)


def lookup_csv(path) -> dict[int, str]:
    table = pd.read_csv(path, keep_default_na=False)  # "N/A" is a borough name here
    return {
        int(i): ("Outside NYC" if b == "N/A" else b)
        for i, b in zip(table.LocationID, table.Borough, strict=True)
    }


def labels_by_hand(trips: pd.DataFrame, boroughs: dict[int, str]) -> dict[str, list[str]]:
    def band(hour: int) -> str:
        if hour < 6:
            return "night (0-6h)"
        if hour < 10:
            return "morning rush (6-10h)"
        if hour < 16:
            return "midday (10-16h)"
        if hour < 20:
            return "evening rush (16-20h)"
        return "evening (20-24h)"

    def miles(d: float) -> str:
        if d < 1:
            return "< 1 mi"
        if d < 3:
            return "1-3 mi"
        if d < 7:
            return "3-7 mi"
        if d < 15:
            return "7-15 mi"
        return ">= 15 mi"

    return {
        "pickup_borough": [boroughs.get(int(z), "Unknown") for z in trips["PULocationID"]],
        "dropoff_borough": [boroughs.get(int(z), "Unknown") for z in trips["DOLocationID"]],
        "hour_band": [band(t.hour) for t in trips["lpep_pickup_datetime"]],
        "distance_band": [miles(d) for d in trips["trip_distance"]],
    }


def by_segment(labels: dict[str, list[str]], error: np.ndarray) -> dict[tuple[str, str], dict]:
    out = {}
    for dimension, values in labels.items():
        values = np.array(values, dtype=object)
        for segment in sorted(set(values)):
            e = error[values == segment]
            out[dimension, segment] = {
                "n": len(e),
                "rmse": float(np.sqrt(np.mean(e**2))),
                "mae": float(np.mean(np.abs(e))),
                "mean_error": float(np.mean(e)),
                "sse": float(np.sum(e**2)),
            }
    return out


def test_real_days_match_numpy_from_the_raw_files_and_rerunning_a_day_is_idempotent(
    home, settings, resources, trip_data_dir, real_data, report_figure
):
    """On the real TLC files (CI requires them); without them, on the suite's synthetic
    stand-ins, the same recomputation from the files, the lookup and the artifact."""
    defs = build_defs([SPEC], resources)
    result = monitor(defs, "2022-02-14", "2022-02-15")
    assert result.success, failure_message(result)
    db = R.metrics_db(settings)
    store = SegmentMetricsStore(db)
    first = store.rows(SPEC.name)

    registry = R.model_registry(settings)
    pipeline = load_pipeline(registry.bundle_dir(SPEC.name, "1") / SPEC.training.artifact)
    # the TLC's own file beside the trips (the stand-ins have none: the copy the package ships)
    tlc_file = trip_data_dir / "taxi_zone_lookup.csv"
    boroughs = lookup_csv(tlc_file if tlc_file.exists() else TLC_LOOKUP)
    # The holdout: the later half (by pickup time) of 2022-01's trips, as training splits it.
    january = raw_trips(trip_data_dir, "2022-01-01", "2022-02-01")
    january = january.sort_values("lpep_pickup_datetime", kind="stable").reset_index(drop=True)
    holdout = january.iloc[round(len(january) * SPEC.training.train_fraction) :]
    held = by_segment(
        labels_by_hand(holdout, boroughs),
        artifact_predictions(pipeline, holdout) - holdout["duration"].to_numpy(),
    )

    worst = 0.0
    for day in ("2022-02-14", "2022-02-15"):
        trips = raw_trips(trip_data_dir, day, str((pd.Timestamp(day) + pd.Timedelta(days=1)).date()))
        error = artifact_predictions(pipeline, trips) - trips["duration"].to_numpy()
        expected = by_segment(labels_by_hand(trips, boroughs), error)
        stored = {(r["dimension"], r["segment"]): r for r in first if r["timestamp"] == day_timestamp(day)}
        assert {k for k, r in stored.items() if r["n_rows"] > 0} == set(expected)
        assert {d for d, _ in stored} == set(DIMENSIONS)
        for dimension in DIMENSIONS:
            sse = {k: v["sse"] for k, v in expected.items() if k[0] == dimension}
            excess = {
                k: max(0.0, s - expected[k]["n"] * held[k]["rmse"] ** 2) for k, s in sse.items() if k in held
            }
            for k, want in ((k, v) for k, v in expected.items() if k[0] == dimension):
                row = stored[k]
                assert row["n_rows"] == row["n_scored"] == want["n"], k
                for column in ("rmse", "mae", "mean_error"):
                    worst = max(worst, abs(row[column] - want[column]))
                    assert row[column] == pytest.approx(want[column], abs=1e-9), (k, column)
                assert row["error_share"] == pytest.approx(sse[k] / sum(sse.values()), abs=1e-9)
                if k in held:
                    assert row["holdout_rmse"] == pytest.approx(held[k]["rmse"], abs=1e-9), k
                    assert row["excess_share"] == pytest.approx(excess[k] / sum(excess.values()), abs=1e-9)
                else:
                    assert row["holdout_rmse"] is None and row["excess_share"] is None
    data = "real" if real_data else "synthetic stand-in"
    report_figure(
        f"segments vs numpy on 2022-02-14/15 ({data} data): {len(first)} rows, max |diff| {worst:.2e}"
    )

    # The partition's metadata has the worst segments, the report has every segment.
    materialization = next(
        e.materialization
        for e in result.get_asset_materialization_events()
        if e.asset_key == dg.AssetKey([SPEC.name, C.DRIFT_METRICS]) and e.partition == "2022-02-14"
    )
    table = materialization.metadata["segments"].value
    assert table.startswith("| dimension | segment |")
    day_rows = [r for r in first if r["timestamp"] == day_timestamp("2022-02-14")]
    assert table == segments_markdown(day_rows, min_rows=SPEC.monitoring.segment_min_rows)
    html = (settings.home / "reports" / SPEC.name / "2022-02-14.html").read_text()
    assert "Where the model is wrong" in html and html.count("<tr") == len(day_rows) + 1

    # Re-materializing a day: the same rows (one per dimension and segment), newer computed_at.
    assert monitor(defs, "2022-02-14").success
    again = store.rows(SPEC.name)
    strip = ["id", "computed_at"]
    assert [{k: v for k, v in r.items() if k not in strip} for r in again] == [
        {k: v for k, v in r.items() if k not in strip} for r in first
    ]
    later = {r["computed_at"] for r in again if r["timestamp"] == day_timestamp("2022-02-14")}
    assert len(later) == 1 and later.pop() > max(r["computed_at"] for r in first)
    with db.transaction() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(segment_metrics)).scalar() == len(first)


# --- pure functions on hand-built days ------------------------------------------------------
def frame(**columns) -> pd.DataFrame:
    n = len(next(iter(columns.values())))
    base = {
        "pickup_datetime": pd.to_datetime(["2022-02-01 12:30"] * n),
        "PULocationID": pd.array([43] * n, dtype="Int64"),
        "DOLocationID": pd.array([43] * n, dtype="Int64"),
        "trip_distance": [2.0] * n,
        "duration": [10.0] * n,
        "prediction": [10.0] * n,
    }
    return pd.DataFrame(base | columns)


def figures_of(rows, dimension: str) -> dict[str, object]:
    return {r.segment: r for r in rows if r.dimension == dimension}


def test_unknown_zone_ids_are_unknown():
    day = frame(
        PULocationID=pd.array([43, 264, 999, None, -1], dtype="Int64"),  # Manhattan, Unknown, 3 unknowns
        DOLocationID=pd.array([265, 1, 132, 43, 0], dtype="Int64"),
        prediction=[12.0, 10.0, 13.0, 14.0, 10.0],
    )
    rows = day_segments(day, Monitoring().segments, tlc_zones())
    pickup = figures_of(rows, "pickup_borough")
    assert pickup["Manhattan"].n_rows == 1
    assert pickup["Unknown"].n_rows == 4  # 264 is the lookup's own Unknown; 999, null, -1 are not in it
    assert pickup["Unknown"].rmse == pytest.approx(math.sqrt((0 + 9 + 16 + 0) / 4))
    dropoff = figures_of(rows, "dropoff_borough")
    assert (dropoff["Outside NYC"].n_rows, dropoff["EWR"].n_rows, dropoff["Queens"].n_rows) == (1, 1, 1)
    assert dropoff["Unknown"].n_rows == 1  # zone 0
    assert sum(r.n_rows for r in dropoff.values()) == 5


def test_an_empty_segment_is_kept_without_figures_and_a_day_with_one_segment():
    # Every trip at 12:30, 2 miles: one hour band, one distance band.
    day = frame(duration=[10.0, 20.0, 30.0], prediction=[12.0, 16.0, 30.0])
    # The holdout: the same trips predicted 1 minute long each (RMSE 1.0 in every segment).
    holdout = holdout_segments(day, np.array([11.0, 21.0, 31.0]), Monitoring().segments, tlc_zones())
    rows = day_segments(day, Monitoring().segments, tlc_zones(), holdout)
    hours = figures_of(rows, "hour_band")
    assert list(hours) == [
        "night (0-6h)",
        "morning rush (6-10h)",
        "midday (10-16h)",
        "evening rush (16-20h)",
        "evening (20-24h)",
    ]
    midday = hours["midday (10-16h)"]
    assert (midday.n_rows, midday.error_share) == (3, 1.0)
    assert midday.rmse == pytest.approx(math.sqrt((4 + 16 + 0) / 3))
    assert midday.mean_error == pytest.approx((2 - 4 + 0) / 3)
    assert midday.holdout_rmse == pytest.approx(1.0)
    assert midday.excess_share == 1.0  # SSE 20 against 3 x 1.0 expected: all of the excess
    for name in ("night (0-6h)", "evening (20-24h)"):  # empty segments: recorded, no figures
        empty = hours[name]
        assert (empty.n_rows, empty.rmse, empty.mean_error, empty.holdout_rmse) == (0, None, None, None)
        assert (empty.error_share, empty.excess_share) == (0.0, 0.0)
    assert sum(r.n_rows for r in figures_of(rows, "distance_band").values()) == 3
    # Empty and tiny segments are never named, however large their share.
    lines = top_segments_lines(segment_rows(rows, "1"), SPEC.name, date(2022, 2, 1), min_rows=3)
    # One segment per dimension has all of its excess; the first three (ties by dimension name).
    assert lines == [
        f"{name}: 100 % of the excess error, RMSE 2.6 vs 1.0 on the holdout (3 trips, mean error -0.7 min)"
        for name in ("distance band 1-3 mi", "drop-off borough Manhattan", "hour band midday (10-16h)")
    ]
    assert top_segments_lines(segment_rows(rows, "1"), SPEC.name, date(2022, 2, 1), min_rows=4) == []


def test_excess_share_by_hand_and_a_model_without_holdout_segments():
    segments = (Segment(dimension="dropoff_borough"),)
    # Queens: errors 4, 4 (SSE 32) vs holdout 2 (expected 8): excess 24.
    # Bronx: errors 3, 3, 3 (SSE 27) vs holdout 1 (expected 3): excess 24.
    # Brooklyn: errors 1 (SSE 1) vs holdout 2: excess 0.
    day = frame(
        DOLocationID=pd.array([7, 7, 3, 3, 3, 14], dtype="Int64"),
        prediction=[14.0, 6.0, 13.0, 13.0, 7.0, 11.0],
    )
    holdout = {
        "zones": "tlc",
        "dimensions": [
            {
                "dimension": "dropoff_borough",
                "bounds": None,
                "segments": {"Queens": [100, 2.0], "Bronx": [50, 1.0], "Brooklyn": [80, 2.0]},
            }
        ],
    }
    rows = figures_of(day_segments(day, segments, tlc_zones(), holdout), "dropoff_borough")
    assert rows["Queens"].excess_share == pytest.approx(0.5)
    assert rows["Bronx"].excess_share == pytest.approx(0.5)
    assert rows["Brooklyn"].excess_share == 0.0
    assert rows["Queens"].error_share == pytest.approx(32 / 60)
    assert rows["Bronx"].mean_error == pytest.approx(1.0)
    # Another lookup, or a model trained before the figures were stored: no holdout, no excess.
    for other in (None, {**holdout, "zones": "synthetic(seed=7)"}):
        bare = figures_of(day_segments(day, segments, tlc_zones(), other), "dropoff_borough")
        assert all(r.holdout_rmse is None for r in bare.values())
        assert all(r.excess_share is None for r in bare.values() if r.n_rows)
    # Lines rank by excess share; the example's form.
    lines = top_segments_lines(segment_rows(rows.values(), "1"), SPEC.name, "2022-02-01", min_rows=2)
    assert lines == [
        "drop-off borough Bronx: 50 % of the excess error, RMSE 3.0 vs 1.0 on the holdout "
        "(3 trips, mean error +1.0 min)",
        "drop-off borough Queens: 50 % of the excess error, RMSE 4.0 vs 2.0 on the holdout "
        "(2 trips, mean error +0.0 min)",
    ]


def test_segments_are_validated_with_a_clear_message():
    from pydantic import ValidationError

    for bad, words in (
        (["hour_band", "hour_band"], "already segments[0]"),
        ([{"dimension": "hour_band", "bounds": [6, 10, 16]}], "hour_band needs 4 bounds"),
        ([{"dimension": "distance_band", "bounds": [3, 1]}], "must increase strictly"),
        ([{"dimension": "pickup_borough", "bounds": [1]}], "takes no bounds"),
        (["zip_code"], "pickup_borough"),
    ):
        with pytest.raises(ValidationError, match=words.replace("[", r"\[").replace("]", r"\]")):
            Monitoring(segments=bad)
    assert [s.dimension for s in Monitoring().segments] == list(DIMENSIONS)


# --- the migration on an existing PostgreSQL metrics DB at 0003 -----------------------------
@pytest.mark.postgres
def test_the_migration_adds_the_table_to_a_postgres_db_at_0003(postgres_url):
    engine = sa.create_engine(postgres_url)
    with engine.begin() as conn:
        command.upgrade(MIG.alembic_config(conn), "0003_incidents")
        conn.execute(
            sa.text(
                "insert into dummy_metrics (model_name, timestamp, n_rows, n_scored, computed_at) "
                "values ('green_taxi_duration', '2022-02-01', 10, 10, now())"
            )
        )
    assert not sa.inspect(engine).has_table("segment_metrics")
    changes = MIG.migrate(engine)
    assert changes[0].split(":")[0] == "applied revision 0004_segment_metrics"  # then the later ones
    assert sa.inspect(engine).has_table("segment_metrics")
    assert schema_differences(engine) == []
    with engine.connect() as conn:
        assert conn.execute(sa.text("select n_rows from dummy_metrics")).scalar() == 10  # kept
    db = MetricsDB(url=postgres_url)
    rows = [{"dimension": "hour_band", "segment": "night (0-6h)", "n_rows": 3, "n_scored": 3, "rmse": 1.0,
             "computed_at": utcnow()}]  # fmt: skip
    with db.transaction() as conn:
        SegmentMetricsStore(db).replace_days(conn, SPEC.name, {day_timestamp("2022-02-01"): rows})
    assert [r["rmse"] for r in SegmentMetricsStore(db).rows(SPEC.name)] == [1.0]
    assert MIG.migrate(engine) == []
    engine.dispose()


# --- the synthetic new district -------------------------------------------------------------
def test_the_new_district_is_the_top_drop_off_segment_on_every_breach_day():
    """Synthetic trips with the scenario calendar; the model trained on 2021-01 as the
    ``duration_model`` asset trains it, the days scored and judged as the monitoring assets do
    (score_day, Evidently's figures, day_segments with the generator's zone lookup)."""
    source = TripSource(kind="synthetic")
    zones = source.zone_lookup()
    assert zones == zone_lookup(7) and zones.name == "synthetic(seed=7)"
    january, _, _ = source.trips_for(SPEC, datetime(2021, 1, 1), datetime(2021, 2, 1))
    bundle, _ = M.train_on_month(SPEC, january, zones=zones)
    assert bundle.info.holdout_segments["zones"] == zones.name
    district = NEW_DISTRICT.attract[0].title()  # "East"
    march, _, _ = source.trips_for(SPEC, datetime(2021, 3, 1), datetime(2021, 4, 1))
    reference = E.reference_dataset(bundle.reference, bundle.features)
    breaches = {}
    for day, trips in march.groupby(march["pickup_datetime"].dt.date):
        scored = score_day(SPEC, trips, bundle, "1")
        figures, _ = E.compute(scored, reference, bundle.features, SPEC.drift_method)
        figures = figures.replace(rmse_ratio=figures.rmse / bundle.info.holdout.rmse)
        if not any(rule.crosses(getattr(figures, rule.metric)) for rule in SPEC.monitoring.rules):
            continue
        rows = day_segments(scored, SPEC.monitoring.segments, zones, bundle.info.holdout_segments)
        dropoff = [
            r
            for r in rows
            if r.dimension == "dropoff_borough" and r.n_scored >= SPEC.monitoring.segment_min_rows
        ]
        top = max(dropoff, key=lambda r: r.excess_share)
        breaches[day] = {
            "rules": [r.id for r in SPEC.monitoring.rules if r.crosses(getattr(figures, r.metric))],
            "top": top.segment if top.excess_share > 0 else None,  # None: no excess error at all
            "share": top.excess_share,
            "lines": top_segments_lines(
                segment_rows(rows, "1"), SPEC.name, day, min_rows=SPEC.monitoring.segment_min_rows
            ),
        }
    district_days = {d: b for d, b in breaches.items() if d >= NEW_DISTRICT.start}
    assert len(district_days) >= 20  # the scenario breaches nearly every day from 2021-03-08 on
    # Every breach day on which the drop-off boroughs carry excess error names the district first.
    with_excess = {d: b for d, b in district_days.items() if b["top"] is not None}
    assert {b["top"] for b in with_excess.values()} == {district}, district_days
    assert min(b["share"] for b in with_excess.values()) > 0.5
    # Every quality breach is such a day, and its email names the district.
    quality = {d: b for d, b in district_days.items() if "rmse_ratio" in b["rules"]}
    assert quality and set(quality) <= set(with_excess)
    for day, b in quality.items():
        assert any(line.startswith(f"drop-off borough {district}: ") for line in b["lines"]), (day, b)
    # A drift-only breach day whose error is below the holdout's in every drop-off borough has
    # no excess to attribute: none is named rather than a made-up one.
    for b in district_days.values():
        if b["top"] is None:
            assert b["rules"] == ["prediction_drift"]
            assert not any(line.startswith("drop-off borough") for line in b["lines"])
    print(
        f"new district: {len(district_days)} breach days from {NEW_DISTRICT.start}, "
        f"{len(with_excess)} with drop-off excess error, top = {district} on all of them "
        f"(excess share {min(b['share'] for b in with_excess.values()):.2f}-"
        f"{max(b['share'] for b in with_excess.values()):.2f}); {len(quality)} quality breaches"
    )


# --- the alert email names the segments -----------------------------------------------------
def test_the_alert_email_names_the_segments_that_explain_the_day(settings, smtp_port):
    on_smtp = smtp_settings(settings, smtp_port)
    db = R.metrics_db(on_smtp)
    put_rows(db, {"2022-01-05": 0.05, "2022-01-06": 0.387})
    segment = {"n_scored": 900, "mae": 5.0, "mean_error": -3.2, "model_version": "1", "computed_at": utcnow()}
    rows = [
        {"dimension": "dropoff_borough", "segment": "Queens", "n_rows": 900, "rmse": 14.1,
         "holdout_rmse": 9.2, "error_share": 0.5, "excess_share": 0.41, **segment},
        {"dimension": "hour_band", "segment": "evening rush (16-20h)", "n_rows": 900, "rmse": 12.0,
         "holdout_rmse": 10.0, "error_share": 0.4, "excess_share": 0.3, **segment},
        # Most of the excess, but too few trips to be named.
        {"dimension": "pickup_borough", "segment": "EWR", "n_rows": 3, "rmse": 80.0, "holdout_rmse": 9.0,
         "error_share": 0.2, "excess_share": 0.9, **segment, "n_scored": 3},
    ]  # fmt: skip
    with db.transaction() as conn:
        SegmentMetricsStore(db).replace_days(conn, ALERT_SPEC.name, {day_timestamp("2022-01-06"): rows})
    defs = build_defs([ALERT_SPEC], build_resources(on_smtp))
    with SmtpServer(smtp_port) as inbox:
        tick(defs, dg.DagsterInstance.ephemeral())
    (msg,) = inbox.messages
    text = msg.get_body(preferencelist=("plain",)).get_content()
    lines = text.splitlines()
    where = lines.index("    Where:")
    assert lines[where + 1 : where + 3] == [
        "      drop-off borough Queens: 41 % of the excess error, RMSE 14.1 vs 9.2 on the holdout "
        "(900 trips, mean error -3.2 min)",
        "      hour band evening rush (16-20h): 30 % of the excess error, RMSE 12.0 vs 10.0 on the holdout "
        "(900 trips, mean error -3.2 min)",
    ]
    assert "EWR" not in text
    # The block follows the day's breach line and figures.
    assert lines[where - 3].startswith("Threshold breach (>0.20): 2022-01-06 00:00")
