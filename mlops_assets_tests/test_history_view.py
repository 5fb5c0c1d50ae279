"""Drift and model error over the monitored days, seen in the Dagster UI (issue 14, part 1).

Real data, real components: v1 is trained on January 2021 and monitors a few days of February
2021 and the last week of January 2022 (a gap of ten months between them), the real drift
alert sensor judges the rows (alerts recorded, the email written to the outbox) and the
retrain it requests promotes v2; all of it through ``dg.materialize`` on the test's own Dagster instance. Then
``dagster dev`` (webserver + daemon) starts on that instance, the UI's backfill mutation
monitors four days of February 2022 with v2, and the daemon's automation condition sensor
materializes ``monitoring_history`` by itself. Chromium opens the asset's page: the chart
(a PNG data URI in the metadata's Markdown) is displayed, and the summary shows the monitored
days' values, the threshold and the promotion. Screenshots go to test-artifacts/.
"""

import os
import re
import shutil
from datetime import date
from pathlib import Path

import dagster as dg
import pytest
import requests

from bench.support import (
    BACKFILL_STATUS,
    FINISHED,
    LAUNCH_BACKFILL,
    free_port,
    start_dagster_dev,
    stop_process,
    wait_for,
    wait_http,
)
from mlops_assets import constants as C
from mlops_assets.alerting.sensor import sensor_name
from mlops_assets.alerting.store import AlertStore
from mlops_assets.definitions import build_defs
from mlops_assets.keys import history_key
from mlops_assets.lib.days import gaps
from mlops_assets.lib.storage.engine import MetricsDB
from mlops_assets.monitoring import history as HV
from mlops_assets.monitoring import history_chart as H
from mlops_assets.monitoring.store import DailyMetricsStore
from mlops_assets.resources import build_resources
from mlops_assets.training.store import TimelineStore
from mlops_assets_tests.helpers import ARTIFACTS, BIN, MONITORING, REPO, chromium, retraining_at_once
from mlops_core.daily_metrics import DailyMetrics

# Retrains at once: this test is about the chart (the waiting policy has its own tests).
SPEC = retraining_at_once()
FEBRUARY_2022 = [f"2022-02-0{d}" for d in range(1, 5)]


def materialize(defs, instance, names, *, first=None, last=None, partition=None, tags=None):
    run_tags = dict(tags or {})
    if first:
        run_tags |= {"dagster/asset_partition_range_start": first, "dagster/asset_partition_range_end": last}
    result = dg.materialize(
        list(defs.assets),
        selection=[dg.AssetKey([SPEC.name, n]) for n in names],
        resources=defs.resources,
        partition_key=partition,
        tags=run_tags,
        instance=instance,
    )
    assert result.success
    return result


def history_records(instance) -> list:
    return instance.fetch_materializations(history_key(SPEC), limit=10).records


@pytest.mark.e2e
@pytest.mark.browser
def test_the_history_view_shows_drift_threshold_and_promotion(
    settings, isolated_env, trip_data_dir, tmp_path
):
    ARTIFACTS.mkdir(exist_ok=True)
    defs = build_defs([SPEC], build_resources(settings))
    instance = dg.DagsterInstance.get()  # the test's DAGSTER_HOME (conftest), SQLite storage
    materialize(defs, instance, [C.TRIPS], first="2021-01-01", last="2021-01-31")
    materialize(defs, instance, [C.DURATION_MODEL], partition="2021-01-01")
    materialize(defs, instance, MONITORING, first="2021-02-01", last="2021-02-04")
    materialize(defs, instance, MONITORING, first="2022-01-25", last="2022-01-31")
    # The real sensor judges the rows: a year later every day breaches the drift rule (alerts,
    # one email); the retrain it requests (the 28 days ending 2022-01-31) promotes v2.
    sensor = defs.resolve_sensor_def(sensor_name(SPEC))
    with dg.build_sensor_context(instance=instance, resources=defs.resources) as context:
        (request,) = sensor(context).run_requests
    assert request.partition_key == "2022-01-31"
    materialize(defs, instance, [C.RETRAINED_MODEL], partition=request.partition_key, tags=request.tags)
    db = MetricsDB(url=settings.metrics_database_url)
    timeline = TimelineStore(db).entries(SPEC.name)
    assert [t["model_version"] for t in timeline] == ["1", "2"], timeline
    assert str(timeline[1]["effective_from"]) == "2022-02-01"
    assert not history_records(instance)

    port = free_port()
    env = {
        **os.environ,
        "MLOPS_HOME": str(isolated_env),
        "TRIP_DATA_DIR": str(trip_data_dir),
        "DAGSTER_HOME": os.environ["DAGSTER_HOME"],
    }
    log = tmp_path / "dagster-dev.log"
    dagster = start_dagster_dev(
        bin_dir=BIN,
        workspace=REPO / "workspace.yaml",
        dagster_home=Path(env["DAGSTER_HOME"]),
        port=port,
        log_path=log,
        env=env,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{url}/server_info", 120, dagster, log)

        def graphql(query, variables):
            response = requests.post(
                f"{url}/graphql", json={"query": query, "variables": variables}, timeout=60
            )
            body = response.json()
            assert "errors" not in body, body["errors"]
            return body["data"]

        # February 2022 monitored with v2 through the UI's backfill; the daemon then redraws the view.
        params = {
            "assetSelection": [{"path": [SPEC.name, name]} for name in MONITORING],
            "partitionNames": FEBRUARY_2022,
            "fromFailure": False,
        }
        launched = graphql(LAUNCH_BACKFILL, {"params": params})["launchPartitionBackfill"]
        assert launched["__typename"] == "LaunchBackfillSuccess", launched

        def backfill_done():
            status = graphql(BACKFILL_STATUS, {"id": launched["backfillId"]})["partitionBackfillOrError"]
            return status if status.get("status") in FINISHED else None

        assert (
            wait_for(backfill_done, timeout=300, interval=3, what="the backfill")["status"]
            == "COMPLETED_SUCCESS"
        )
        (record,) = wait_for(
            lambda: history_records(instance),
            timeout=240,
            interval=3,
            what="the automation sensor's history run",
        )
        run = instance.get_run_by_id(record.run_id)
        assert run.tags.get("dagster/sensor_name") == C.HISTORY_SENSOR, run.tags
        metadata = record.asset_materialization.metadata
        rows = [r.as_dict() for r in DailyMetricsStore(db).rows(SPEC.name)]
        assert metadata["days_monitored"].value == len(rows) == 4 + 7 + 4
        assert metadata["promotions"].value == 1
        assert metadata["alerts"].value == len(AlertStore(db).all(SPEC.name)) > 0
        assert Path(metadata["chart_file"].value).stat().st_size > 10_000
        v1_drift = [r["prediction_drift"] for r in rows if r["model_version"] == "1"]

        with chromium() as browser:
            page = browser.new_page(viewport={"width": 1600, "height": 1200})
            page.goto(f"{url}/assets/{SPEC.name}/{C.MONITORING_HISTORY}", wait_until="networkidle")
            try:
                show_chart(page)
                chart = page.locator("img[src^='data:image/png;base64,']").first
                chart.wait_for(state="visible", timeout=30_000)
                box = chart.bounding_box()
                assert box and box["width"] > 400 and box["height"] > 200, box
                assert chart.evaluate("img => img.naturalWidth") > 400
                page.wait_for_timeout(1000)  # the dialog fades in: the screenshot shows it opaque
            finally:
                page.screenshot(path=ARTIFACTS / "ui-monitoring-history.png", full_page=True)
            text = page.locator("body").inner_text()
            assert "15 monitored days, 2021-02-01 .. 2022-02-04" in text
            assert "prediction_drift > 0.20" in text and "rmse_ratio > 1.50" in text
            assert re.search(r"v2 promoted, from 2022-02-01", text)
            assert f"{max(v1_drift):.3f}" in text  # v1's drift max, as the metrics DB has it

            # A monitored day's partition names its drifted feature columns, with each one's drift.
            day = rows[-1]
            assert day["timestamp"].date() == date(2022, 2, 4)
            page.goto(
                f"{url}/assets/{SPEC.name}/{C.DRIFT_METRICS}?view=partitions&partition=2022-02-04",
                wait_until="networkidle",
            )
            try:
                names = page.get_by_role("row").filter(has=page.get_by_text("drifted_columns", exact=True))
                names.wait_for(state="visible", timeout=30_000)
                assert (day["drifted_columns"] or "none") in names.inner_text()
                table = page.get_by_role("row").filter(has=page.get_by_text("feature_drift", exact=True))
                for column in [*SPEC.features.categorical, *SPEC.features.numerical]:
                    assert column in table.inner_text()
            finally:
                page.screenshot(path=ARTIFACTS / "ui-drifted-columns.png", full_page=True)
    finally:
        stop_process(dagster, timeout=20)
        shutil.copy(log, ARTIFACTS / "history-dagster-dev.log")


def show_chart(page) -> None:
    """The asset's Overview lists the latest materialization's metadata; a Markdown value as
    long as the chart's is a "[Show Markdown]" link that opens it in a dialog."""
    row = page.get_by_role("row").filter(has=page.get_by_text("chart", exact=True))
    button = row.get_by_text("Show Markdown")
    button.wait_for(state="visible", timeout=30_000)
    button.click()


def test_the_chart_says_when_nothing_is_monitored():
    empty = H.History(SPEC, [], [], [])
    assert H.draw(empty).startswith(b"\x89PNG")
    assert "no monitored days yet" in HV.summary_markdown(empty)
    assert H.segments([]) == [] and H.version_spans([]) == []


DAYS = [date(2021, 3, 30), date(2021, 3, 31), date(2022, 1, 1), date(2022, 1, 2), date(2022, 1, 4)]


def test_no_line_crosses_a_gap_between_monitored_periods():
    assert gaps(DAYS) == [
        (2, date(2021, 4, 1), date(2021, 12, 31)),
        (4, date(2022, 1, 3), date(2022, 1, 3)),
    ]
    assert H.segments(DAYS) == [range(0, 2), range(2, 4), range(4, 5)]
    # nor across a promotion
    assert H.segments(DAYS, ["1", "1", "1", "2", "2"]) == [range(0, 2), range(2, 3), range(3, 4), range(4, 5)]


def test_promotions_and_model_bands_sit_on_the_compressed_axis():
    # a promotion in effect from a day inside a gap starts where the gap ends
    assert H.position(DAYS, date(2021, 6, 1)) == 1.5
    assert H.position(DAYS, date(2022, 1, 2)) == 2.5
    assert H.position(DAYS, date(2023, 1, 1)) == 4.5  # after every monitored day
    rows = [DailyMetrics(model_version=v) for v in ("1", "1", "2", "2", "3")]
    assert H.version_spans(rows) == [("1", 0, 1), ("2", 2, 3), ("3", 4, 4)]
    assert H.month_ticks(DAYS) == ([0, 2], ["2021-03-30", "2022-01-01"])
