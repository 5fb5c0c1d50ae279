"""The ops domain: a failed run, a day not monitored by its deadline and a retrain that never
started each reach a person once, over real SMTP, and an email that could not be sent is sent
later. (The same under the real daemon, with a restart: test_ops_daemon.py.)

Real components: Dagster instances (ephemeral), runs that really fail (the trips asset reading
an empty data folder), the real sensor definitions evaluated as the daemon does
(``evaluate_tick`` on a ``build_sensor_context``), the metrics DB (SQLite) and an SMTP server
on loopback (aiosmtpd). Materializations of old days are reported to the instance as events
(what a monitoring run records) instead of computed. The clock is passed in where a test needs
a given hour (the freshness deadline, a retrain waiting an hour); nothing else is faked.
"""

from __future__ import annotations

import dataclasses
import logging
import subprocess
import sys
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path

import dagster as dg
import pytest

from mlops_assets import constants as C
from mlops_assets import resources as R
from mlops_assets.definitions import build_defs
from mlops_assets.keys import drift_key, dummy_metrics_key, trips_key
from mlops_assets.lib.links import Links
from mlops_assets.ops import notices as N
from mlops_assets.ops.checks import freshness_check_keys, schedule_on
from mlops_assets.ops.freshness import judge
from mlops_assets.ops.sensors import freshness_watch, watch
from mlops_assets.ops.store import NoticeStore
from mlops_assets.resources import build_resources
from mlops_assets.settings import Settings
from mlops_assets.training.retrain_asset import RETRAIN_TAG
from mlops_assets_tests.helpers import default_spec
from mlops_assets_tests.test_alerting import SmtpServer, smtp_port, smtp_settings  # noqa: F401

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
SPEC = default_spec()
LINKS = Links(dagster_ui_url="http://dagster.example:3000")
PREFIX = "[mlops_assets platform]"
LOG = logging.getLogger("test_ops")


def evaluate(defs, name: str, instance, cursor=None):
    """One tick of a sensor, as the daemon runs it; the asset events it reports are stored."""
    sensor = defs.resolve_sensor_def(name)
    with dg.build_sensor_context(
        instance=instance, cursor=cursor, resources=defs.resources, definitions=defs
    ) as context:
        result = sensor.evaluate_tick(context)
    for event in result.asset_events or []:
        instance.report_runless_asset_event(event)
    return result


def failing_defs(settings, tmp_path, port, **values):
    """The code location with an empty trip data folder: the trips asset fails."""
    empty = tmp_path / "no-trips"
    empty.mkdir(exist_ok=True)
    broken = dataclasses.replace(settings, trip_source="local", trip_data_dir=empty)
    return build_defs([SPEC], build_resources(smtp_settings(broken, port, **values)))


def fail_a_run(defs, instance, day="2022-02-07") -> dg.ExecuteInProcessResult:
    job = defs.resolve_job_def(C.MONITORING_JOB)
    result = job.execute_in_process(
        instance=instance, partition_key=day, asset_selection=[trips_key(SPEC)], raise_on_error=False
    )
    assert not result.success
    return result


def monitored(instance, *days: str) -> None:
    """Record days of drift_metrics and dummy_metrics as materialized."""
    for key in (drift_key(SPEC), dummy_metrics_key(SPEC)):
        for day in days:
            instance.report_runless_asset_event(dg.AssetMaterialization(asset_key=key, partition=day))


def days(start: str, end: str) -> list[str]:
    first, last = date.fromisoformat(start), date.fromisoformat(end)
    return [(first + timedelta(days=i)).isoformat() for i in range((last - first).days + 1)]


# --- what a notice says ---------------------------------------------------------------------
def test_a_run_failure_notice_names_the_job_the_day_the_error_and_the_run_page():
    notice = N.run_failure(
        run_id="0123456789abcdef",
        job_name=C.MONITORING_JOB,
        tags={"dagster/partition": "2022-02-07"},
        message='Execution of run for "metrics_backfill_to_postgres" failed.',
        step_errors=[("green_taxi_duration__trips", "FileNotFoundError: no file")],
        model_name=SPEC.name,
        links=LINKS,
    )
    assert notice["summary"] == "run failed: metrics_backfill_to_postgres 2022-02-07 (01234567)"
    assert "Step green_taxi_duration__trips failed: FileNotFoundError: no file" in notice["detail"]
    assert "http://dagster.example:3000/runs/0123456789abcdef" in notice["detail"]
    tags = {
        "dagster/asset_partition_range_start": "2022-02-01",
        "dagster/asset_partition_range_end": "2022-02-28",
    }
    assert N.partitions(tags) == "2022-02-01...2022-02-28"


def test_one_email_lists_every_notice_and_its_subject_counts_them():
    a = {"summary": "run failed: x (1)", "detail": "Job: x\nRun: 1"}
    b = {"summary": "retrain not started: m", "detail": "Model: m"}
    assert N.subject([a]) == f"{PREFIX} run failed: x (1)"
    assert N.subject([a, b]) == f"{PREFIX} run failed: x (1) (+1 more)"
    assert N.body([a, b]) == (
        "2 problem(s) the platform found in itself:\n\n"
        "* run failed: x (1)\n  Job: x\n  Run: 1\n\n"
        "* retrain not started: m\n  Model: m\n"
    )


# --- which days are late ----------------------------------------------------------------------
SIX = time(6, 0)
WEEK = timedelta(days=7)
START = date(2021, 1, 1)


def d(text: str) -> date:
    return date.fromisoformat(text)


@pytest.mark.parametrize(
    ("now", "late"),
    [
        ("2022-02-10T05:59", []),  # the 9th is due at 06:00 on the 10th
        ("2022-02-10T06:00", ["2022-02-09"]),
        ("2022-02-17T05:59", ["2022-02-09"]),  # due 7 days ago: still inside the window
        ("2022-02-17T06:00", []),  # the window has moved past it: told while it was in
    ],
)
def test_a_day_is_late_from_its_deadline_and_judged_for_the_window(now, late):
    materialized = {d(x) for x in days("2022-01-01", "2022-02-08")}
    if now >= "2022-02-10T07":
        materialized |= {d(x) for x in days("2022-02-10", "2022-02-16")}
    result = judge(
        datetime.fromisoformat(now).replace(tzinfo=UTC),
        materialized=materialized,
        deadline=SIX,
        window=WEEK,
        schedule_on=False,
        first_day=START,
    )
    assert result.live
    assert [x.isoformat() for x in result.late] == late


def test_a_replay_of_history_is_never_late_and_a_live_schedule_always_judged():
    replay = {d(x) for x in days("2021-01-01", "2021-03-31")}
    now = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
    quiet = judge(now, materialized=replay, deadline=SIX, window=WEEK, schedule_on=False, first_day=START)
    assert (quiet.live, quiet.passed, quiet.late) == (False, True, [])
    assert quiet.describe().startswith("not judged")
    # the same instance with the nightly schedule on: the last week is missing
    live = judge(now, materialized=replay, deadline=SIX, window=WEEK, schedule_on=True, first_day=START)
    assert live.late == [d(x) for x in days("2026-11-29", "2026-12-05")]


# --- a failed run -----------------------------------------------------------------------------
def test_failed_runs_are_emailed_once_in_one_email_to_the_ops_list(settings, tmp_path, smtp_port):  # noqa: F811
    defs = failing_defs(settings, tmp_path, smtp_port, alert_email_to_ops="platform@example.com")
    instance = dg.DagsterInstance.ephemeral()
    started = evaluate(defs, C.RUN_FAILURE_SENSOR, instance)  # first tick: Dagster sets the cursor
    first, second = fail_a_run(defs, instance, "2022-02-07"), fail_a_run(defs, instance, "2022-02-08")

    with SmtpServer(smtp_port) as inbox:
        seen = evaluate(defs, C.RUN_FAILURE_SENSOR, instance, started.cursor)
        evaluate(defs, C.OPS_WATCH_SENSOR, instance)
        # again: Dagster's cursor has moved past the failures, and they were sent
        evaluate(defs, C.RUN_FAILURE_SENSOR, instance, seen.cursor)
        evaluate(defs, C.OPS_WATCH_SENSOR, instance)
        # a cursor that lost its place sees them again: each is recorded once all the same
        evaluate(defs, C.RUN_FAILURE_SENSOR, instance, started.cursor)
        evaluate(defs, C.OPS_WATCH_SENSOR, instance)

    assert len(inbox.messages) == 1
    msg = inbox.messages[0]
    assert msg["Subject"] == (
        f"{PREFIX} run failed: metrics_backfill_to_postgres 2022-02-07 ({first.run_id[:8]}) (+1 more)"
    )
    assert msg["To"] == "platform@example.com"
    body = msg.get_content()
    for result, day in ((first, "2022-02-07"), (second, "2022-02-08")):
        assert f"Run: {result.run_id}" in body
        assert f"Partition(s): {day}" in body
        assert f"http://localhost:3000/runs/{result.run_id}" in body
    assert f"Model: {SPEC.name}" in body
    assert "Step green_taxi_duration__trips failed:" in body
    assert "caused by mlops_assets.data.sources.TripDataError: TRIP_DATA_DIR=" in body
    assert "Stack Trace" not in body and 'File "' not in body  # the run's page has those
    rows = NoticeStore(R.metrics_db(settings)).all()
    assert [(n["kind"], n["status"]) for n in rows] == [("run_failure", "sent")] * 2


def test_smtp_down_then_up_sends_the_failure_later_once(settings, tmp_path, smtp_port, capsys):  # noqa: F811
    defs = failing_defs(settings, tmp_path, smtp_port)
    instance = dg.DagsterInstance.ephemeral()
    started = evaluate(defs, C.RUN_FAILURE_SENSOR, instance)
    fail_a_run(defs, instance)
    evaluate(defs, C.RUN_FAILURE_SENSOR, instance, started.cursor)
    down = evaluate(defs, C.OPS_WATCH_SENSOR, instance)  # nobody listens on the SMTP port
    assert "platform email failed, 1 notice(s) pending" in down.skip_message
    (notice,) = NoticeStore(R.metrics_db(settings)).all()
    assert (notice["status"], notice["attempts"]) == ("pending", 1)
    assert f"could not send via smtp://127.0.0.1:{smtp_port}" in notice["last_error"]
    assert "will retry on the next tick" in capsys.readouterr().err
    # the model alerts' recipients get it when ALERT_EMAIL_TO_OPS is not set
    with SmtpServer(smtp_port) as inbox:
        evaluate(defs, C.OPS_WATCH_SENSOR, instance)
        evaluate(defs, C.OPS_WATCH_SENSOR, instance)
    assert len(inbox.messages) == 1
    assert inbox.messages[0]["To"] == "oncall@example.com, ml@example.com"
    (notice,) = NoticeStore(R.metrics_db(settings)).all()
    assert (notice["status"], notice["attempts"]) == ("sent", 2)


def test_a_password_in_an_error_is_never_stored_nor_emailed(settings, tmp_path, smtp_port, monkeypatch):  # noqa: F811
    monkeypatch.setenv("SMTP_PASSWORD", "hunter2-secret")
    folder = tmp_path / "hunter2-secret"  # the error names the folder, so the password
    folder.mkdir()
    broken = dataclasses.replace(settings, trip_source="local", trip_data_dir=folder, smtp_password_set=True)
    defs = build_defs([SPEC], build_resources(smtp_settings(broken, smtp_port)))
    instance = dg.DagsterInstance.ephemeral()
    started = evaluate(defs, C.RUN_FAILURE_SENSOR, instance)
    fail_a_run(defs, instance)
    evaluate(defs, C.RUN_FAILURE_SENSOR, instance, started.cursor)
    (notice,) = NoticeStore(R.metrics_db(settings)).all()
    assert "hunter2-secret" not in notice["detail"] and "***" in notice["detail"]


# --- a day not monitored by its deadline ------------------------------------------------------
def test_a_late_day_is_emailed_once_and_again_when_it_lands(settings, smtp_port):  # noqa: F811
    resources = build_resources(smtp_settings(settings, smtp_port))
    defs = build_defs([SPEC], resources)
    instance = dg.DagsterInstance.ephemeral()
    db, policy = resources[C.METRICS_DB], resources[C.OPS_POLICY]
    monitored(instance, *days("2022-02-01", "2022-02-08"))

    def tick(now: str):
        result = freshness_watch(
            [SPEC],
            instance=instance,
            metrics_db=db,
            policy=policy,
            links=resources[C.LINKS],
            now=datetime.fromisoformat(now).replace(tzinfo=UTC),
        )
        for event in result.asset_events:
            instance.report_runless_asset_event(event)
        evaluate(defs, C.OPS_WATCH_SENSOR, instance)
        return result

    def check(key):
        record = instance.get_latest_asset_check_evaluation_record(key)
        return record.event.dagster_event.event_specific_data

    with SmtpServer(smtp_port) as inbox:
        before = tick("2022-02-10T05:59")  # the 9th is not due yet
        assert all(e.passed for e in before.asset_events) and not inbox.messages
        tick("2022-02-10T06:01")
        again = tick("2022-02-10T06:30")
        assert not again.asset_events  # unchanged: nothing new is reported to Dagster
        assert len(inbox.messages) == 1
        for key in freshness_check_keys(SPEC):
            evaluation = check(key)
            assert not evaluation.passed
            assert evaluation.metadata["late_days"].value == ["2022-02-09"]
        monitored(instance, "2022-02-09")  # someone backfilled it
        tick("2022-02-10T07:00")
        tick("2022-02-10T07:30")
    assert len(inbox.messages) == 2
    late, landed = inbox.messages
    assert late["Subject"] == (
        f"{PREFIX} not monitored in time: {SPEC.name}/drift_metrics 2022-02-09 "
        "(due 2022-02-10 06:00 UTC) (+1 more)"
    )
    assert f"Asset: {SPEC.name}/dummy_metrics" in late.get_content()
    assert "Latest monitored day: 2022-02-08" in late.get_content()
    assert f"http://localhost:3000/assets/{SPEC.name}/dummy_metrics?view=partitions" in late.get_content()
    assert (
        landed["Subject"]
        == f"{PREFIX} monitored late, now in: {SPEC.name}/drift_metrics 2022-02-09 (+1 more)"
    )
    assert all(check(key).passed for key in freshness_check_keys(SPEC))


def test_a_replay_of_2021_raises_no_freshness_alarm(settings, smtp_port):  # noqa: F811
    defs = build_defs([SPEC], build_resources(smtp_settings(settings, smtp_port)))
    instance = dg.DagsterInstance.ephemeral()
    monitored(instance, *days("2021-01-01", "2021-03-31"))
    with SmtpServer(smtp_port) as inbox:
        result = evaluate(defs, C.FRESHNESS_SENSOR, instance)  # the real sensor, the real clock
        evaluate(defs, C.OPS_WATCH_SENSOR, instance)
    assert not inbox.messages
    assert [e.passed for e in result.asset_events] == [True, True]
    assert result.asset_events[0].description.startswith("not judged")
    assert NoticeStore(R.metrics_db(settings)).all() == []


@pytest.mark.e2e
def test_with_the_nightly_schedule_on_the_last_days_are_judged(settings, smtp_port):  # noqa: F811
    # The real CLI turns the schedule on in this test's instance (DAGSTER_HOME), as the UI does.
    out = subprocess.run(
        [str(BIN / "dagster"), "schedule", "start", C.MONITORING_SCHEDULE, "-w", "workspace.yaml"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert out.returncode == 0, out.stderr
    instance = dg.DagsterInstance.get()
    assert schedule_on(instance)
    defs = build_defs([SPEC], build_resources(smtp_settings(settings, smtp_port)))
    monitored(instance, *days("2021-01-01", "2021-03-31"))  # history, and nothing recent
    with SmtpServer(smtp_port) as inbox:
        result = evaluate(defs, C.FRESHNESS_SENSOR, instance)  # the real clock
        evaluate(defs, C.OPS_WATCH_SENSOR, instance)
    assert [e.passed for e in result.asset_events] == [False, False]
    (msg,) = inbox.messages
    # the 7 days due within the window, of each asset, all in one email
    late = [n for n in NoticeStore(R.metrics_db(settings)).all() if n["kind"] == "late_day"]
    assert len(late) == 14
    assert msg["Subject"].startswith(f"{PREFIX} not monitored in time: {SPEC.name}/drift_metrics ")


def test_the_monitoring_job_never_evaluates_the_freshness_checks(settings):
    defs = build_defs([SPEC], build_resources(settings))
    in_job = defs.resolve_job_def(C.MONITORING_JOB).asset_layer.asset_graph.asset_check_keys
    assert not set(freshness_check_keys(SPEC)) & set(in_job)
    assert any(k.name == C.CHECK_PREDICTION_DRIFT for k in in_job)  # its own checks stay


def test_the_check_runs_from_the_ui_too(settings):
    defs = build_defs([SPEC], build_resources(settings))
    instance = dg.DagsterInstance.ephemeral()
    monitored(instance, *days("2021-01-01", "2021-01-31"))
    job = defs.resolve_implicit_global_asset_job_def()
    keys = set(freshness_check_keys(SPEC))
    run = job.get_subset(asset_selection=set(), asset_check_selection=keys).execute_in_process(
        instance=instance
    )
    assert {(e.asset_key, e.passed) for e in run.get_asset_check_evaluations()} == {
        (drift_key(SPEC), True),
        (dummy_metrics_key(SPEC), True),
    }


# --- a retrain that never started -------------------------------------------------------------
def waiting_retrain(defs, instance, status=dg.DagsterRunStatus.NOT_STARTED):
    # (a QUEUED run needs a code location's origin, which only a workspace gives; NOT_STARTED is
    # the same wait before the queue; the daemon test has a real queue)
    return instance.create_run_for_job(
        job_def=defs.resolve_job_def(C.RETRAIN_JOB),
        tags={
            RETRAIN_TAG: SPEC.name,
            "mlops/trigger_rule": "prediction_drift",
            "mlops/trigger_day": "2022-02-07",
        },
        status=status,
    )


def test_a_retrain_waiting_past_its_limit_is_named_on_each_tick_and_emailed_once(settings, smtp_port):  # noqa: F811
    resources = build_resources(smtp_settings(settings, smtp_port))
    defs = build_defs([SPEC], resources)
    instance = dg.DagsterInstance.ephemeral()
    run = waiting_retrain(defs, instance)
    args = dict(
        instance=instance,
        metrics_db=resources[C.METRICS_DB],
        mailer=resources[C.OPS_MAILER],
        policy=resources[C.OPS_POLICY],
        links=resources[C.LINKS],
        log=LOG,
    )
    now = datetime.now(UTC)
    with SmtpServer(smtp_port) as inbox:
        assert watch([SPEC], **args, now=now).skip_message == "nothing to tell"  # seconds: not late
        late = now + timedelta(seconds=Settings.retrain_start_limit_seconds + 60)
        first = watch([SPEC], **args, now=late)
        second = watch([SPEC], **args, now=late)
    assert len(inbox.messages) == 1
    summary = f"retrain not started: {SPEC.name}, NOT_STARTED for 16 min ({run.run_id[:8]})"
    assert inbox.messages[0]["Subject"] == f"{PREFIX} {summary}"
    body = inbox.messages[0].get_content()
    assert "Requested for: trigger_day=2022-02-07, trigger_rule=prediction_drift" in body
    assert f"http://localhost:3000/runs/{run.run_id}" in body
    assert f"waiting: {summary}" in first.skip_message
    assert second.skip_message == f"waiting: {summary}"  # still named, not emailed again


@pytest.mark.parametrize("status", [dg.DagsterRunStatus.STARTED, dg.DagsterRunStatus.SUCCESS])
def test_a_retrain_that_started_is_not_late(settings, status):
    resources = build_resources(settings)
    defs = build_defs([SPEC], resources)
    instance = dg.DagsterInstance.ephemeral()
    waiting_retrain(defs, instance, status)
    result = watch(
        [SPEC],
        instance=instance,
        metrics_db=resources[C.METRICS_DB],
        mailer=resources[C.OPS_MAILER],
        policy=resources[C.OPS_POLICY],
        links=resources[C.LINKS],
        log=LOG,
        now=datetime.now(UTC) + timedelta(days=1),
    )
    assert result.skip_message == "nothing to tell"


def test_the_ops_settings_come_from_the_environment_and_a_bad_deadline_names_itself(tmp_path):
    env = {
        "MLOPS_HOME": str(tmp_path),
        "ALERT_EMAIL_TO": "oncall@example.com",
        "ALERT_EMAIL_TO_OPS": "platform@example.com",
        "FRESHNESS_DEADLINE": "07:30",
        "FRESHNESS_WINDOW_DAYS": "3",
        "RETRAIN_START_LIMIT_SECONDS": "60",
    }
    settings = Settings.from_env(env)
    resources = build_resources(settings)
    assert resources[C.OPS_MAILER].to_addresses() == ["platform@example.com"]
    assert resources[C.MAILER].to_addresses() == ["oncall@example.com"]
    policy = resources[C.OPS_POLICY]
    assert (policy.deadline(), policy.window(), policy.retrain_start_limit()) == (
        time(7, 30),
        timedelta(days=3),
        timedelta(seconds=60),
    )
    default = build_resources(Settings.from_env({"MLOPS_HOME": str(tmp_path), "ALERT_EMAIL_TO": "a@b.c"}))
    assert default[C.OPS_MAILER].to_addresses() == ["a@b.c"]
    with pytest.raises(
        ValueError, match=r"FRESHNESS_DEADLINE must be a time of day HH:MM \(UTC\), got '6am'"
    ):
        Settings.from_env({"MLOPS_HOME": str(tmp_path), "FRESHNESS_DEADLINE": "6am"})
