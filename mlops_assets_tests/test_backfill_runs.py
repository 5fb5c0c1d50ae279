"""Backfills split into runs of N days on Dagster's run queue (issue 15, part 4).

Exercises: ``MONITORING_BACKFILL_DAYS_PER_RUN`` and a spec's ``monitoring.backfill_days_per_run``
becoming one backfill policy on the four daily assets; the local instance config that
``make dev`` and ``make demo`` write (loaded by a real ``DagsterInstance``); a backfill launched
with the UI's GraphQL mutation on ``dagster dev`` over that instance, which the daemon splits
into runs of at most N days that the run queue executes concurrently, up to its backfill
limit; and two processes materializing overlapping ranges at the same time against
PostgreSQL, which leave exactly one row per day. Nothing is faked: the real TLC files, the
real daemon and webserver, a real PostgreSQL database.
"""

import multiprocessing
import os
import shutil
import warnings
from pathlib import Path

import dagster as dg
import pytest
import requests
import sqlalchemy as sa
import yaml

from bench.support import (
    BACKFILL_STATUS,
    FINISHED,
    LAUNCH_BACKFILL,
    free_port,
    start_dagster_dev,
    stop_process,
    wait_for,
)
from mlops_assets import constants as C
from mlops_assets import local_instance
from mlops_assets.definitions import build_defs
from mlops_assets.lib.storage.engine import MetricsDB
from mlops_assets.monitoring.store import DailyMetricsStore
from mlops_assets.resources import build_resources
from mlops_assets.settings import Settings
from mlops_assets_tests.helpers import (
    ARTIFACTS,
    BIN,
    CHROMIUM,
    MONITORING,
    REPO,
    chromium,
    copy_timeline,
    default_spec,
)
from mlops_core.specs import SpecError, load_specs
from mlops_core.text import ConfigError

SPEC = default_spec()
RANGE_START, RANGE_END = "dagster/asset_partition_range_start", "dagster/asset_partition_range_end"
BACKFILL_TAG = "dagster/backfill"


def keys(spec=SPEC) -> list[dg.AssetKey]:
    return [dg.AssetKey([spec.name, name]) for name in MONITORING]


# --- the setting and the spec field ---------------------------------------------------------
@pytest.mark.parametrize("raw", ["0", "-2", "7.5", "seven", "1e3"])
def test_a_bad_days_per_run_setting_is_refused_by_name(raw):
    with pytest.raises(ConfigError, match=rf"MONITORING_BACKFILL_DAYS_PER_RUN .*got '{raw}'"):
        Settings.from_env({"MONITORING_BACKFILL_DAYS_PER_RUN": raw})


@pytest.mark.parametrize(("raw", "days"), [(None, None), ("", None), ("  ", None), ("7", 7), (" 30 ", 30)])
def test_the_days_per_run_setting(raw, days):
    env = {} if raw is None else {"MONITORING_BACKFILL_DAYS_PER_RUN": raw}
    assert Settings.from_env(env).backfill_days_per_run == days


def write_spec(folder: Path, monitoring_extra: str) -> Path:
    """The packaged spec with ``monitoring_extra`` added under ``monitoring:``."""
    folder.mkdir(exist_ok=True)
    text = Path(SPEC.source_file).read_text()
    assert "\nmonitoring:\n" in text
    text = text.replace("\nmonitoring:\n", f"\nmonitoring:\n{monitoring_extra}", 1)
    (folder / Path(SPEC.source_file).name).write_text(text)
    return folder


@pytest.mark.parametrize(
    ("in_spec", "setting", "days"),
    [
        (None, None, None),  # neither: one run, as before
        (None, 5, 5),  # the deployment's setting
        ("  backfill_days_per_run: 2\n", 5, 2),  # the spec wins
        ("  backfill_days_per_run: null\n", 5, None),  # the spec keeps one run explicitly
    ],
)
def test_one_policy_for_the_daily_chain_from_the_setting_or_the_spec(tmp_path, in_spec, setting, days):
    folder = write_spec(tmp_path / "specs", in_spec or "")
    settings = Settings.for_home(tmp_path / "home", specs_dir=folder, backfill_days_per_run=setting)
    (spec,) = settings.load_specs()
    assert spec.monitoring.backfill_days_per_run == days
    defs = build_defs([spec], build_resources(settings))
    expected = (
        dg.BackfillPolicy.single_run()
        if days is None
        else dg.BackfillPolicy.multi_run(max_partitions_per_run=days)
    )
    graph = defs.resolve_asset_graph()
    # trips, predictions, drift_metrics, dummy_metrics agree, so a chunk of days is one run
    assert [graph.get(k).backfill_policy for k in keys(spec)] == [expected] * 4
    assert graph.get(dg.AssetKey([spec.name, C.DURATION_MODEL])).backfill_policy is None


@pytest.mark.parametrize("value", ["0", "-1", "2.5", '"7"', "true"])
def test_a_bad_days_per_run_in_a_spec_names_the_file_and_field(tmp_path, value):
    folder = write_spec(tmp_path / "specs", f"  backfill_days_per_run: {value}\n")
    with pytest.raises(SpecError, match=r"green_taxi_duration.yaml: monitoring.backfill_days_per_run"):
        load_specs(folder)


# --- the local instance (make dev, make demo) -------------------------------------------------
def test_the_local_instance_has_the_run_queue(tmp_path):
    home = tmp_path / "local_dagster_home"
    assert local_instance.ensure(home) is None
    instance = dg.DagsterInstance.from_config(str(home))
    try:
        assert type(instance.run_coordinator).__name__ == "QueuedRunCoordinator"
        queue = instance.get_concurrency_config().run_queue_config
        limits = {t["key"]: t for t in queue.tag_concurrency_limits}
        assert queue.max_concurrent_runs == 3
        assert limits["mlops/retrain"] == {
            "key": "mlops/retrain",
            "value": {"applyLimitPerUniqueValue": True},
            "limit": 1,
        }
        assert limits[BACKFILL_TAG] == {"key": BACKFILL_TAG, "limit": 2}  # all backfills together
    finally:
        instance.dispose()


def test_an_earlier_default_is_upgraded_and_a_users_file_is_kept(tmp_path):
    home = tmp_path / "local_dagster_home"
    home.mkdir()
    config = home / "dagster.yaml"
    config.write_text(local_instance.EARLIER_DEFAULT)  # what make dev / make demo wrote before
    assert local_instance.ensure(home) is None
    assert config.read_text() == local_instance.TEMPLATE.read_text()

    own = "telemetry:\n  enabled: false\n# mine\n"
    config.write_text(own)
    note = local_instance.ensure(home)
    assert config.read_text() == own  # never overwritten
    assert "sets no run queue" in note and "run_coordinator" in note

    config.write_text("run_queue:\n  max_concurrent_runs: 1\n")
    assert local_instance.ensure(home) is None

    # the Makefile's command
    home2 = tmp_path / "fresh"
    out = subprocess_run([str(BIN / "python"), "-m", "mlops_assets.local_instance", str(home2)])
    assert out.returncode == 0, out.stderr
    assert (
        yaml.safe_load((home2 / "dagster.yaml").read_text())["run_coordinator"]["config"][
            "max_concurrent_runs"
        ]
        == 3
    )


def subprocess_run(args):
    import subprocess

    return subprocess.run(args, capture_output=True, text=True, timeout=120, cwd=REPO)


# --- a backfill through the daemon, split and run in parallel ------------------------------------
DAYS_PER_RUN = 2
DAYS = [f"2022-02-{d:02d}" for d in range(1, 7)]  # three chunks of two days


def look_at_the_backfill(url: str, backfill_id: str, run_ids: list[str]) -> None:
    """The backfill's page in the UI lists its runs (screenshot in test-artifacts/). Where
    chromium is missing this part is left out with a warning, unless MLOPS_REQUIRE_BROWSER=1
    (CI), where ``chromium()`` fails the test."""
    if not os.path.exists(CHROMIUM) and os.environ.get("MLOPS_REQUIRE_BROWSER") != "1":
        warnings.warn(f"{CHROMIUM} is missing: the backfill's page was not looked at", stacklevel=2)
        return
    from playwright.sync_api import expect

    with chromium() as browser:
        page = browser.new_page(viewport={"width": 1600, "height": 1000})
        page.goto(f"{url}/runs/b/{backfill_id}?tab=runs", wait_until="networkidle")
        for run_id in run_ids:  # the runs table shows a run's id by its first 8 characters
            expect(page.get_by_text(run_id[:8]).first).to_be_visible(timeout=30_000)
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "backfill-runs.png"), full_page=True)


def most_at_once(intervals: list[tuple[float, float]]) -> int:
    """The largest number of the intervals that were in progress at one moment."""
    events = sorted([(start, 1) for start, _ in intervals] + [(end, -1) for _, end in intervals])
    now = best = 0
    for _, step in events:  # an end sorts before a start at the same instant
        now += step
        best = max(best, now)
    return best


def test_most_at_once():
    assert most_at_once([(0, 2), (1, 3), (2.5, 4)]) == 2
    assert most_at_once([(0, 1), (1, 2)]) == 1
    assert most_at_once([(0, 10), (1, 2), (3, 4)]) == 2


@pytest.mark.e2e
@pytest.mark.postgres
@pytest.mark.browser
def test_a_backfill_is_split_into_runs_that_the_queue_runs_in_parallel(
    home, settings, postgres_url, trip_data_dir, tmp_path, report_figure
):
    dagster_home = Path(os.environ["DAGSTER_HOME"])
    assert local_instance.ensure(dagster_home) is None  # what `make dev` runs on
    copy_timeline(SPEC.name, settings.metrics_database_url, postgres_url)  # v1 from 2022-02-01
    port = free_port()
    env = {
        **os.environ,
        "MLOPS_HOME": str(home),
        "TRIP_DATA_DIR": str(trip_data_dir),
        "METRICS_DATABASE_URL": postgres_url,
        "MONITORING_BACKFILL_DAYS_PER_RUN": str(DAYS_PER_RUN),
    }
    log = tmp_path / "dagster-dev.log"
    dagster = start_dagster_dev(
        bin_dir=BIN,
        workspace=REPO / "workspace.yaml",
        dagster_home=dagster_home,
        port=port,
        log_path=log,
        env=env,
    )
    url = f"http://127.0.0.1:{port}"

    def graphql(query, variables):
        response = requests.post(f"{url}/graphql", json={"query": query, "variables": variables}, timeout=60)
        response.raise_for_status()
        body = response.json()
        assert "errors" not in body, body["errors"]
        return body["data"]

    def up():
        if dagster.poll() is not None:
            raise RuntimeError(f"dagster dev exited:\n{log.read_text()[-3000:]}")
        try:
            return requests.get(f"{url}/server_info", timeout=5).status_code == 200
        except requests.RequestException:
            return False

    try:
        wait_for(up, timeout=120, what="dagster dev")
        params = {  # the UI's "Materialize → backfill" dialog
            "assetSelection": [{"path": k.path} for k in keys()],
            "partitionNames": DAYS,
            "fromFailure": False,
            "tags": [{"key": "dagster/from_ui", "value": "true"}],
        }
        launched = graphql(LAUNCH_BACKFILL, {"params": params})["launchPartitionBackfill"]
        assert launched["__typename"] == "LaunchBackfillSuccess", launched
        backfill_id = launched["backfillId"]

        def done():
            status = graphql(BACKFILL_STATUS, {"id": backfill_id})["partitionBackfillOrError"]
            return status if status.get("status") in FINISHED else None

        status = wait_for(done, timeout=420, interval=3, what="the backfill")
        assert status["status"] == "COMPLETED_SUCCESS", (status, log.read_text()[-4000:])
        with dg.DagsterInstance.get() as instance:  # the instance dagster dev runs on
            records = instance.get_run_records(filters=dg.RunsFilter(tags={BACKFILL_TAG: backfill_id}))
        look_at_the_backfill(url, backfill_id, [r.dagster_run.run_id for r in records])
    finally:
        stop_process(dagster, timeout=20)
        ARTIFACTS.mkdir(exist_ok=True)
        shutil.copy(log, ARTIFACTS / "backfill-runs-dagster-dev.log")
    runs = sorted((r.dagster_run for r in records), key=lambda run: run.tags[RANGE_START])
    # split: runs of at most N consecutive days, together covering the range once, each run
    # carrying the whole chain trips → dummy_metrics for its days
    chunks = [(run.tags[RANGE_START], run.tags[RANGE_END]) for run in runs]
    assert chunks == [
        ("2022-02-01", "2022-02-02"),
        ("2022-02-03", "2022-02-04"),
        ("2022-02-05", "2022-02-06"),
    ]
    for run in runs:
        assert run.status == dg.DagsterRunStatus.SUCCESS
        assert set(run.asset_selection) == set(keys())
    # concurrent, up to the queue's backfill limit (2 in the local instance)
    intervals = [(r.start_time, r.end_time) for r in records]
    at_once = most_at_once(intervals)
    first = min(s for s, _ in intervals)
    report_figure(
        f"backfill of {len(DAYS)} days in runs of {DAYS_PER_RUN} (make dev's queue): {len(runs)} runs, "
        f"at most {at_once} at once; runs (start-end, s from the first start): "
        + ", ".join(f"{s - first:.1f}-{e - first:.1f}" for s, e in sorted(intervals))
    )
    assert at_once == 2
    # one row per day in the PostgreSQL metrics DB, scored by v1
    rows = [r.as_dict() for r in DailyMetricsStore(MetricsDB(url=postgres_url)).rows(SPEC.name)]
    assert [str(r["timestamp"].date()) for r in rows] == DAYS
    assert {r["model_version"] for r in rows} == {"1"}


# --- two runs writing the same and neighbouring days at once ------------------------------------
def materialize_range(home: str, data_dir: str, metrics_url: str, start: str, end: str, barrier, out):
    """One process's run over [start, end] (a spawn target, so module level)."""
    import time

    settings = Settings.for_home(home, trip_data_dir=Path(data_dir), metrics_database_url=metrics_url)
    defs = build_defs([SPEC], build_resources(settings))
    barrier.wait(timeout=300)  # both processes have loaded everything: start together
    began = time.time()
    result = dg.materialize(
        list(defs.assets),
        selection=keys(),
        resources=defs.resources,
        tags={RANGE_START: start, RANGE_END: end},
        instance=dg.DagsterInstance.ephemeral(),
        raise_on_error=False,
    )
    from mlops_assets_tests.helpers import failure_message

    out.put((start, result.success, began, time.time(), "" if result.success else failure_message(result)))


@pytest.mark.postgres
def test_concurrent_runs_on_overlapping_days_leave_one_row_per_day(
    home, settings, postgres_url, trip_data_dir
):
    copy_timeline(SPEC.name, settings.metrics_database_url, postgres_url)
    ctx = multiprocessing.get_context("spawn")
    barrier, out = ctx.Barrier(2), ctx.Queue()
    # 02-03 and 02-04 are written by both; 02-02/02-03 and 02-04/02-05 are neighbours
    ranges = [("2022-02-01", "2022-02-04"), ("2022-02-03", "2022-02-06")]
    procs = [
        ctx.Process(
            target=materialize_range,
            args=(str(home), str(trip_data_dir), postgres_url, start, end, barrier, out),
        )
        for start, end in ranges
    ]
    for proc in procs:
        proc.start()
    try:
        results = sorted(out.get(timeout=600) for _ in procs)
    finally:
        for proc in procs:
            proc.join(timeout=60)
            if proc.is_alive():
                proc.kill()
                proc.join(timeout=10)
    for start, success, _, _, message in results:
        assert success, f"the run from {start} failed: {message}"
    (_, _, a0, a1, _), (_, _, b0, b1, _) = results
    assert a0 < b1 and b0 < a1, f"the two runs did not overlap in time: {results}"
    engine = sa.create_engine(postgres_url)
    try:
        with engine.connect() as conn:
            counts = conn.execute(
                sa.text(
                    "select timestamp::date::text as day, count(*) from dummy_metrics "
                    "where model_name = :m group by 1 order by 1"
                ),
                {"m": SPEC.name},
            ).all()
    finally:
        engine.dispose()
    assert [(day, n) for day, n in counts] == [(day, 1) for day in DAYS]
