"""Drift alerts and the retrain loop: sensor → email → retrain asset → MLflow → champion.

Real components: an SMTP server on loopback (aiosmtpd, with AUTH where a test needs it), the
metrics DB (SQLite; PostgreSQL where marked), a real MLflow store, real Dagster instances,
and the real sensor definition evaluated with ``dg.build_sensor_context``. The sensor tests
insert ``dummy_metrics`` rows directly (the table is their input; the monitoring tests
produce it for real). The prediction service's reload endpoint is stood in for by a tiny
HTTP server here; the real service is exercised end to end in test_e2e.py. Everything is
configured through ``Settings`` values (SMTP host and port, recipients, the serving URL); only
the secrets the resources read through ``dg.EnvVar`` (SMTP_PASSWORD, SERVING_RELOAD_TOKEN) are
environment variables.
"""

import dataclasses
import email
import email.policy
import http.server
import json
import logging
import re
import threading
import time
from datetime import date, datetime

import dagster as dg
import mlflow
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult

from bench.support import free_port
from mlops_assets import constants as C
from mlops_assets import resources as R
from mlops_assets.alerting.messages import breach_line
from mlops_assets.alerting.sensor import sensor_name
from mlops_assets.alerting.store import AlertStore
from mlops_assets.definitions import build_defs, defs_from_settings
from mlops_assets.lib.storage.engine import MetricsDB, day_timestamp, utcnow
from mlops_assets.monitoring.store import DailyMetricsStore
from mlops_assets.resources import build_resources
from mlops_assets.settings import Settings
from mlops_assets.training.retrain_asset import (
    ATTEMPT_TAG,
    EPISODE_TAG,
    RETRAIN_TAG,
    TRIGGER_DAY_TAG,
    TRIGGER_RULE_TAG,
    TRIGGER_VALUE_TAG,
)
from mlops_assets.training.store import DecisionStore, TimelineStore
from mlops_assets_tests.helpers import (
    default_spec,
    failure_message,
    load_trips,
    spec_with_rules,
    train_through_assets,
)
from mlops_core.daily_metrics import DailyMetrics
from mlops_core.specs import Features, Retraining

SPEC = default_spec()
RETRAINED = dg.AssetKey([SPEC.name, C.RETRAINED_MODEL])


# --- a real SMTP server on loopback ---------------------------------------------------------
class Inbox:
    def __init__(self):
        self.messages: list[email.message.Message] = []
        self.raw: list[bytes] = []  # as received, before any parsing unfolds headers

    async def handle_DATA(self, server, session, envelope):
        self.raw.append(envelope.content)
        self.messages.append(email.message_from_bytes(envelope.content, policy=email.policy.default))
        return "250 OK"


class SmtpServer:
    """aiosmtpd on 127.0.0.1:<port>; optionally requiring AUTH with one user/password."""

    def __init__(self, port: int, credentials: tuple[str, str] | None = None):
        self.inbox = Inbox()
        kwargs = {}
        if credentials:

            def authenticator(server, session, envelope, mechanism, auth_data):
                ok = (auth_data.login.decode(), auth_data.password.decode()) == credentials
                return AuthResult(success=ok, handled=False)

            kwargs = {"authenticator": authenticator, "auth_required": True, "auth_require_tls": False}
        self.controller = Controller(self.inbox, hostname="127.0.0.1", port=port, **kwargs)

    def __enter__(self):
        self.controller.start()
        return self.inbox

    def __exit__(self, *exc):
        self.controller.stop()


@pytest.fixture
def smtp_port() -> int:
    """A free loopback port for this test's SMTP server (see ``smtp_settings``)."""
    return free_port()


def smtp_settings(settings: Settings, port: int, **values) -> Settings:
    """``settings`` sending alerts over SMTP at 127.0.0.1:``port`` to two recipients."""
    return dataclasses.replace(
        settings,
        smtp_host="127.0.0.1",
        smtp_port=port,
        alert_email_to="oncall@example.com, ml@example.com",
        alert_email_from="mlops@example.com",
        **values,
    )


# --- metric rows and sensor evaluation ------------------------------------------------------
def put_rows(
    db: MetricsDB, values: dict[str, float | None], version: str = "1", extra: dict[str, dict] | None = None
) -> None:
    """Rows with ``prediction_drift`` per day (None: a day without trips); ``extra`` adds
    other columns to some days (day -> columns)."""
    now = utcnow()
    extra = extra or {}
    DailyMetricsStore(db).upsert(
        DailyMetrics(
            model_name=SPEC.name,
            timestamp=day_timestamp(day),
            model_version=version,
            prediction_drift=value,
            num_drifted_columns=1,
            share_missing_values=0.0,
            n_rows=2000 if value is not None else 0,
            n_scored=2000 if value is not None else 0,
            drift_threshold=0.2,
            computed_at=now,
            **extra.get(day, {}),
        )
        for day, value in values.items()
    )


def tick(defs, instance, cursor=None):
    sensor = defs.resolve_sensor_def(sensor_name(SPEC))
    with dg.build_sensor_context(instance=instance, cursor=cursor, resources=defs.resources) as context:
        return sensor(context)


def plain_text(msg) -> str:
    """The text/plain part (incident emails are multipart/alternative: text, then HTML)."""
    return msg.get_body(preferencelist=("plain",)).get_content()


def bodies(inbox: Inbox) -> list[str]:
    return [plain_text(m) for m in inbox.messages]


def test_breach_line_is_the_original_format():
    assert breach_line(0.2, datetime(2022, 2, 19, 20, 30), 0.23414) == (
        "Threshold breach (>0.20): 2022-02-19 20:30 — 0.2341"
    )


def test_sensor_waits_for_data_after_the_change_then_requests_once_and_advances_its_cursor(
    isolated_env, settings, resources
):
    db = R.metrics_db(settings)
    put_rows(
        db,
        {"2022-02-01": 0.05, "2022-02-02": 0.31, "2022-02-03": 0.12, "2022-02-04": 0.27, "2022-02-05": None},
    )
    defs, instance = build_defs([SPEC], resources), dg.DagsterInstance.ephemeral()
    result = tick(defs, instance)
    # One episode from 2022-02-02 (a quiet day inside it does not end it): no retrain before
    # retraining.days_after_change (21) days of it are monitored.
    assert not result.run_requests
    assert (
        "episode since 2022-02-02: waiting for data after the change, a retrain on 2022-02-22 at the "
        "earliest (retraining.days_after_change=21; monitored up to 2022-02-05)"
    ) in result.skip_reason.skip_message
    newest = max(r["computed_at"] for r in [r.as_dict() for r in DailyMetricsStore(db).rows(SPEC.name)])
    assert json.loads(result.cursor) == {"computed_at": newest.isoformat()}

    (eml,) = (isolated_env / "outbox").glob("*.eml")  # no smtp_host: the outbox
    msg = email.message_from_bytes(eml.read_bytes(), policy=email.policy.default)
    # one incident (2022-02-02 .. 2022-02-04): one email announcing it, both days listed
    assert msg["Subject"] == (
        "[FIRING] green_taxi_duration: prediction_drift > 0.20 opened 2022-02-02 (worst 0.3100)"
    )
    body = plain_text(msg)
    assert "Model: green_taxi_duration" in body
    lines = [line for line in body.splitlines() if line.startswith("Threshold breach")]
    assert lines == [
        "Threshold breach (>0.20): 2022-02-02 00:00 — 0.3100",
        "Threshold breach (>0.20): 2022-02-04 00:00 — 0.2700",
    ]

    # The next tick, from the new cursor: no new rows, no new email, still waiting.
    again = tick(defs, instance, result.cursor)
    assert not again.run_requests
    assert len(list((isolated_env / "outbox").glob("*.eml"))) == 1
    assert again.cursor == result.cursor

    # The change goes on to 2022-02-22: now one request, for the episode's first attempt, on
    # the window ending that day; a later tick asks for the same run (the same run key).
    put_rows(db, {f"2022-02-{d:02d}": 0.30 for d in range(6, 23)})
    ready = tick(defs, instance, again.cursor)
    (request,) = ready.run_requests
    assert request.partition_key == "2022-02-22"
    assert request.run_key == "retrain:green_taxi_duration:2022-02-02:1"
    assert request.asset_selection == [RETRAINED]
    assert request.tags == {
        RETRAIN_TAG: SPEC.name,
        TRIGGER_RULE_TAG: "prediction_drift > 0.20",
        TRIGGER_VALUE_TAG: "0.3000",
        TRIGGER_DAY_TAG: "2022-02-22",
        EPISODE_TAG: "2022-02-02",
        ATTEMPT_TAG: "1",
    }
    assert [r.run_key for r in tick(defs, instance, ready.cursor).run_requests] == [request.run_key]


def test_a_rule_that_retrains_at_once_requests_the_latest_breach_day(isolated_env, settings):
    """``retrain: at_once``: the original behaviour, the trailing window of the latest breach day."""
    spec = spec_with_rules([{"metric": "prediction_drift", "retrain": "at_once"}])
    db = R.metrics_db(settings)
    put_rows(
        db,
        {"2022-02-01": 0.05, "2022-02-02": 0.31, "2022-02-03": 0.12, "2022-02-04": 0.27, "2022-02-05": None},
    )
    defs, instance = build_defs([spec], build_resources(settings)), dg.DagsterInstance.ephemeral()
    (request,) = tick(defs, instance).run_requests
    assert request.partition_key == "2022-02-04"
    assert request.run_key == "retrain:green_taxi_duration:2022-02-04"
    assert request.tags == {
        RETRAIN_TAG: SPEC.name,
        TRIGGER_RULE_TAG: "prediction_drift > 0.20",
        TRIGGER_VALUE_TAG: "0.2700",
        TRIGGER_DAY_TAG: "2022-02-04",
    }


def test_each_breach_is_emailed_exactly_once_over_real_smtp(settings, smtp_port):
    db = R.metrics_db(settings)
    defs = build_defs([SPEC], build_resources(smtp_settings(settings, smtp_port)))
    instance = dg.DagsterInstance.ephemeral()
    with SmtpServer(smtp_port) as inbox:
        put_rows(db, {f"2022-01-{d:02d}": 0.30 + d / 1000 for d in range(1, 31)})  # a month of breaches
        cursor = tick(defs, instance).cursor
        assert len(inbox.messages) == 1  # thirty breaches, one incident, one email
        msg = inbox.messages[0]
        assert msg["To"] == "oncall@example.com, ml@example.com"
        assert msg["From"] == "mlops@example.com"
        lines = [x for x in bodies(inbox)[0].splitlines() if x.startswith("Threshold")]
        assert len(lines) == 30
        assert lines[0] == "Threshold breach (>0.20): 2022-01-01 00:00 — 0.3010"

        # A restarted daemon (no cursor) and a re-materialization (same days recomputed) email nothing.
        tick(defs, instance, None)
        put_rows(db, {f"2022-01-{d:02d}": 0.30 + d / 1000 for d in range(1, 31)})
        cursor = tick(defs, instance, cursor).cursor
        assert len(inbox.messages) == 1

        # A new breach inside the open incident (one quiet day does not end it) is in the
        # reminder once repeat_every_days (7) monitored days have passed, with only its own line.
        time.sleep(0.01)
        put_rows(db, {"2022-02-01": 0.05, "2022-02-02": 0.44})
        cursor = tick(defs, instance, cursor).cursor
        assert len(inbox.messages) == 1
        time.sleep(0.01)
        put_rows(db, {f"2022-02-{d:02d}": 0.30 for d in range(3, 8)})
        tick(defs, instance, cursor)
        assert len(inbox.messages) == 2
        assert inbox.messages[1]["Subject"].startswith("[REMINDER] green_taxi_duration: prediction_drift")
        assert next(x for x in bodies(inbox)[1].splitlines() if x.startswith("Threshold")) == (
            "Threshold breach (>0.20): 2022-02-02 00:00 — 0.4400"
        )
    assert {a["status"] for a in AlertStore(db).all(SPEC.name)} == {"sent"}
    assert len(AlertStore(db).all(SPEC.name)) == 36


def header_lines(raw: bytes, name: bytes) -> list[bytes]:
    """The raw lines of header ``name``: its first line and any folded continuation lines."""
    head = raw.replace(b"\r\n", b"\n").split(b"\n\n", 1)[0].split(b"\n")
    (first,) = [i for i, line in enumerate(head) if line.startswith(name + b":")]
    end = first + 1
    while end < len(head) and head[end][:1] in (b" ", b"\t"):
        end += 1
    return head[first:end]


def test_the_subject_is_one_line_over_smtp_and_in_the_outbox(settings, smtp_port):
    """An incident's Subject is ~88 characters: the email module's default policy folds it at
    78 onto a second line; it must arrive, and be written, as one line."""
    db = R.metrics_db(settings)
    put_rows(db, {f"2022-01-{d:02d}": 0.30 + d / 1000 for d in range(1, 31)})
    with SmtpServer(smtp_port) as inbox:
        tick(
            build_defs([SPEC], build_resources(smtp_settings(settings, smtp_port))),
            dg.DagsterInstance.ephemeral(),
        )
    (raw,) = inbox.raw
    expected = (
        b"Subject: [FIRING] green_taxi_duration: prediction_drift > 0.20 opened 2022-01-01 (worst 0.3300)"
    )
    assert len(expected) > 78
    assert header_lines(raw, b"Subject") == [expected]

    # Without SMTP_HOST the same alert is an .eml file (its own metrics DB: nothing alerted yet).
    outbox = dataclasses.replace(settings, metrics_database_url=f"sqlite:///{settings.home}/outbox.db")
    put_rows(R.metrics_db(outbox), {f"2022-01-{d:02d}": 0.30 + d / 1000 for d in range(1, 31)})
    tick(build_defs([SPEC], build_resources(outbox)), dg.DagsterInstance.ephemeral())
    (eml,) = (settings.home / "outbox").glob("*.eml")
    assert header_lines(eml.read_bytes(), b"Subject") == [expected]


def test_spec_threshold_and_env_threshold(isolated_env, settings):
    """A spec without its own threshold gets the configured default (DRIFT_THRESHOLD=0.30)."""
    db = R.metrics_db(settings)
    put_rows(db, {"2022-02-01": 0.25})
    defs = defs_from_settings(dataclasses.replace(settings, drift_threshold=0.30))
    result = tick(defs, dg.DagsterInstance.ephemeral())
    assert not result.run_requests
    assert "no new breach in 1 new row(s) (rules: prediction_drift > 0.30;" in result.skip_reason.skip_message
    assert not (isolated_env / "outbox").exists()


def test_smtp_down_then_up_delivers_once_later(settings, smtp_port, capsys):
    db = R.metrics_db(settings)
    defs = build_defs([SPEC], build_resources(smtp_settings(settings, smtp_port)))
    instance = dg.DagsterInstance.ephemeral()
    put_rows(db, {"2022-02-07": 0.22})
    first = tick(defs, instance)  # nobody listens on the SMTP port
    (alert,) = AlertStore(db).all(SPEC.name)
    assert alert["status"] == "pending" and alert["attempts"] == 1
    assert f"could not send via smtp://127.0.0.1:{smtp_port}" in alert["last_error"]
    assert "NOT sent, will retry on the next tick" in capsys.readouterr().err  # the tick's log
    # the evaluation went on: the retraining policy judged the episode
    assert "episode since 2022-02-07: waiting for data after the change" in first.skip_reason.skip_message

    with SmtpServer(smtp_port) as inbox:
        tick(defs, instance, first.cursor)
        tick(defs, instance, first.cursor)
    assert len(inbox.messages) == 1
    assert "Threshold breach (>0.20): 2022-02-07 00:00 — 0.2200" in bodies(inbox)[0]
    (alert,) = AlertStore(db).all(SPEC.name)
    assert alert["status"] == "sent" and alert["attempts"] == 2


# The loopback test server takes AUTH without TLS (aiosmtpd warns about that, rightly).
@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS:UserWarning")
def test_auth_refused_is_retried_and_the_password_never_leaks(
    settings, smtp_port, monkeypatch, caplog, capsys
):
    # The password is a secret the mailer reads through dg.EnvVar: set it as a variable.
    monkeypatch.setenv("SMTP_PASSWORD", "wrong-Secret-123")
    configured = smtp_settings(settings, smtp_port, smtp_user="alerts", smtp_password_set=True)
    db = R.metrics_db(settings)
    put_rows(db, {"2022-02-08": 0.5})
    instance = dg.DagsterInstance.ephemeral()
    with SmtpServer(smtp_port, credentials=("alerts", "right-Secret-456")) as inbox:
        with caplog.at_level(logging.DEBUG):
            cursor = tick(build_defs([SPEC], build_resources(configured)), instance).cursor
        assert inbox.messages == []
        (alert,) = AlertStore(db).all(SPEC.name)
        assert alert["status"] == "pending" and "SMTPAuthenticationError" in alert["last_error"]
        out = capsys.readouterr()
        assert "SMTPAuthenticationError" in out.err  # reported on the tick...
        for text in (alert["last_error"], caplog.text, out.err, out.out):
            assert "wrong-Secret-123" not in text  # ...without the password

        # The resource as Dagster (and its UI) sees it: the variable's name, not its value.
        mailer = build_defs([SPEC], build_resources(configured)).resources["mailer"]
        assert "wrong-Secret-123" not in json.dumps(
            mailer._get_non_default_public_field_values(), default=str
        )
        assert isinstance(mailer.smtp_password, dg.EnvVar)

        monkeypatch.setenv("SMTP_PASSWORD", "right-Secret-456")
        with caplog.at_level(logging.DEBUG):
            tick(build_defs([SPEC], build_resources(configured)), instance, cursor)
        assert len(inbox.messages) == 1
        out = capsys.readouterr()
        for text in (caplog.text, out.err, out.out):
            assert "right-Secret-456" not in text
        assert "right-Secret-456" not in inbox.messages[0].as_string()
    assert AlertStore(db).all(SPEC.name)[0]["status"] == "sent"


def test_no_second_retrain_while_one_is_in_flight_and_none_when_covered(settings, resources):
    db = R.metrics_db(settings)
    put_rows(db, {f"2022-02-{d:02d}": 0.4 for d in range(1, 22)})  # 21 days after the change
    defs, instance = build_defs([SPEC], resources), dg.DagsterInstance.ephemeral()
    instance.add_run(
        dg.DagsterRun(
            job_name=C.RETRAIN_JOB,
            run_id="inflight",
            status=dg.DagsterRunStatus.STARTED,
            tags={RETRAIN_TAG: SPEC.name},
        )
    )
    result = tick(defs, instance)
    assert result.run_requests == [] or result.run_requests is None
    assert "a retrain of green_taxi_duration is in flight" in result.skip_reason.skip_message

    # Once a champion trained on data after the change is in effect, the episode is covered.
    instance.delete_run("inflight")  # (the in-flight run is over)
    TimelineStore(db).record(SPEC.name, "2", date(2022, 2, 22), reason="test", window_end=date(2022, 2, 21))
    covered = tick(defs, instance, result.cursor)
    assert not covered.run_requests
    assert (
        "the champion was trained on data up to 2022-02-21, after the change"
        in covered.skip_reason.skip_message
    )


# --- the retrain asset ----------------------------------------------------------------------
class ReloadRecorder:
    """Stands in for the prediction service's POST /reload (the real one: test_e2e.py)."""

    def __init__(self):
        self.calls: list[dict] = []
        recorder = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                recorder.calls.append({"path": self.path, "auth": self.headers.get("Authorization")})
                body = json.dumps({"previous_version": "1", "version": "2"}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def retrain(defs, day: str, trigger: dict[str, str] | None = None, instance=None):
    return dg.materialize(
        list(defs.assets),
        selection=[RETRAINED],
        resources=defs.resources,
        partition_key=day,
        raise_on_error=False,
        tags={RETRAIN_TAG: SPEC.name, **(trigger or {})},
        instance=instance,
    )


def metadata(result) -> dict:
    (event,) = [e for e in result.get_asset_materialization_events() if e.asset_key == RETRAINED]
    return {k: v.value for k, v in event.event_specific_data.materialization.metadata.items()}


def test_retrain_registers_compares_promotes_and_tells_serving(home, settings, monkeypatch, report_figure):
    """v1 (trained on 2022-01-01..15) vs a model on the 28 days ending 2022-01-31, scored on
    the same last 7 days: the fresher model is no worse, so it becomes champion."""
    recorder = ReloadRecorder()
    # The reload token is a secret the serving client reads through dg.EnvVar.
    monkeypatch.setenv("SERVING_RELOAD_TOKEN", "reload-token-xyz")
    serving = dataclasses.replace(settings, serving_url=recorder.url, serving_token_set=True)
    # As the alert sensor requests it: the run's tags name the rule and the value.
    trigger = {
        TRIGGER_RULE_TAG: "rmse_ratio > 1.50",
        TRIGGER_VALUE_TAG: "1.6100",
        TRIGGER_DAY_TAG: "2022-01-31",
    }
    try:
        result = retrain(build_defs([SPEC], build_resources(serving)), "2022-01-31", trigger)
    finally:
        recorder.close()
    assert result.success, failure_message(result)
    md = metadata(result)
    report_figure(
        f"retrain for 2022-01-31: candidate v{md['candidate_version']} holdout RMSE "
        f"{md['candidate_holdout_rmse']:.3f} vs champion v{md['champion_version']} "
        f"{md['champion_holdout_rmse']:.3f} -> {md['decision']}"
    )
    assert md["decision"] == "promoted"
    assert md["candidate_holdout_rmse"] <= md["champion_holdout_rmse"]
    assert md["training_window"] == "2022-01-04 .. 2022-01-31 (holdout from 2022-01-25)"
    assert md["effective_from"] == "2022-02-01"
    assert (md["trigger_rule"], md["trigger_value"], md["trigger_day"]) == (
        "rmse_ratio > 1.50",
        "1.6100",
        "2022-01-31",
    )
    assert recorder.calls == [{"path": "/reload", "auth": "Bearer reload-token-xyz"}]

    registry = R.model_registry(settings)
    client = mlflow.MlflowClient(registry.uri())
    versions = {v.version: v for v in client.search_model_versions(f"name='{SPEC.name}'")}
    assert set(versions) == {1, 2}
    assert registry.champion(SPEC.name) == "2"
    tags = versions[2].tags
    assert (
        tags["decision"] == "promoted" and tags["source"] == "retrain" and tags["breach_day"] == "2022-01-31"
    )
    assert float(tags["candidate_rmse"]) == pytest.approx(md["candidate_holdout_rmse"])
    assert float(tags["champion_rmse"]) == pytest.approx(md["champion_holdout_rmse"])
    assert tags["champion_version"] == "1"
    assert (tags["trigger_rule"], tags["trigger_value"]) == ("rmse_ratio > 1.50", "1.6100")
    assert client.get_run(versions[2].run_id).info.run_name == "retrain 2022-01-31 (rmse_ratio > 1.50)"
    timeline = TimelineStore(R.metrics_db(settings)).entries(SPEC.name)
    # Nothing was monitored with v1 yet, so v2 takes its place from v1's first day.
    assert [(t["model_version"], str(t["effective_from"])) for t in timeline] == [("2", "2022-02-01")]
    assert timeline[-1]["window_end"] == date(2022, 1, 31) and timeline[-1]["previous_version"] == "1"

    # Re-materializing the same partition registers nothing new and keeps the champion.
    again = metadata(retrain(build_defs([SPEC], build_resources(serving)), "2022-01-31"))
    assert again["model_version"] == "2" and again["newly_registered"] is False
    assert len(client.search_model_versions(f"name='{SPEC.name}'")) == 2


def test_a_worse_model_is_registered_but_not_promoted(home, settings, resources):
    """The spec's features lose the zones (as if someone edited the YAML): the candidate is
    worse on the same holdout, so the champion stays."""
    worse = SPEC.model_copy(update={"features": Features(numerical=("trip_distance",))})
    result = retrain(build_defs([worse], resources), "2022-01-31")
    assert result.success, failure_message(result)
    md = metadata(result)
    assert md["decision"] == "not promoted"
    assert md["candidate_holdout_rmse"] > md["champion_holdout_rmse"]
    assert md["decision_reason"].startswith("worse than the champion (candidate vs champion v1: RMSE ")
    assert md["rmse_diff_low"] > 0  # worse beyond noise, paired over the same holdout trips
    registry = R.model_registry(settings)
    assert registry.champion(SPEC.name) == "1"
    assert registry.version_tags(SPEC.name, md["model_version"])["decision"] == "not_promoted"
    assert [t["model_version"] for t in TimelineStore(R.metrics_db(settings)).entries(SPEC.name)] == ["1"]


def test_too_few_rows_in_the_window_is_refused(home, settings, resources):
    picky = SPEC.model_copy(update={"retraining": Retraining(window_days=28, holdout_days=7, min_rows=10**6)})
    result = retrain(build_defs([picky], resources), "2022-01-31")
    # A refusal is a decision, not a failed run: recorded in the metadata and model_decisions.
    assert result.success, failure_message(result)
    md = metadata(result)
    assert md["decision"] == "refused"
    message = md["decision_reason"]
    assert "green_taxi_duration: the window 2022-01-04 .. 2022-01-31 holds " in message
    assert "usable trips, fewer than retraining.min_rows=1000000; refusing to train on so little" in message
    (decision,) = DecisionStore(R.metrics_db(settings)).all(SPEC.name)[-1:]
    assert (decision["kind"], decision["decision_key"], decision["reason"]) == (
        "refused",
        "retrain:2022-01-31",
        message,
    )
    assert (
        len(
            mlflow.MlflowClient(R.model_registry(settings).uri()).search_model_versions(f"name='{SPEC.name}'")
        )
        == 1
    )


def test_a_window_with_a_missing_week_trains_on_the_rest_and_reports_the_gap(
    home, settings, tmp_path, trip_data_dir
):
    """2022-01-10..16 cut out of the January file: the retrain for 2022-01-31 trains on the
    other 21 days of its window and says which 7 were missing."""
    folder = tmp_path / "tlc"
    folder.mkdir()
    table = pq.read_table(trip_data_dir / "green_tripdata_2022-01.parquet")
    day = pc.strftime(table.column("lpep_pickup_datetime"), format="%Y-%m-%d")
    week = pa.array([f"2022-01-{d}" for d in range(10, 17)])
    pq.write_table(
        table.filter(pc.invert(pc.is_in(day, value_set=week))), folder / "green_tripdata_2022-01.parquet"
    )
    gappy = dataclasses.replace(settings, trip_data_dir=folder)
    instance = dg.DagsterInstance.ephemeral()
    result = retrain(build_defs([SPEC], build_resources(gappy)), "2022-01-31", instance=instance)
    assert result.success, failure_message(result)
    md = metadata(result)
    assert md["missing_days"] == "2022-01-10 .. 2022-01-16 (7 days)" and md["n_missing_days"] == 7
    assert md["training_window"] == "2022-01-04 .. 2022-01-31 (holdout from 2022-01-25)"
    trained_days = {
        str(d.date()) for d in load_trips(SPEC, folder, "2022-01-04", "2022-01-25")["pickup_datetime"]
    }
    assert len(trained_days) == 14 and not trained_days & {f"2022-01-{d}" for d in range(10, 17)}
    logged = [entry.user_message for entry in instance.all_logs(result.run_id)]
    assert any(
        "7 of the 28 days of the window 2022-01-04 .. 2022-01-31 have no trips, training on the rest: "
        "2022-01-10 .. 2022-01-16 (7 days)" in message
        for message in logged
    )


def test_a_window_reaching_into_a_month_the_data_lacks_trains_on_the_rest(home, settings):
    """The shared data has no December 2021: the retrain for 2022-01-20 (window 2021-12-24 ..
    2022-01-20) used to fail with MissingPartitionError; it trains on January's 20 days.
    (The trips of 2022-02 were never materialized either: a retrain there just reads them.)"""
    result = retrain(build_defs([SPEC], build_resources(settings)), "2022-01-20")
    assert result.success, failure_message(result)
    md = metadata(result)
    assert md["missing_days"] == "2021-12-24 .. 2021-12-31 (8 days)"
    assert md["training_window"] == "2022-01-01 .. 2022-01-20 (holdout from 2022-01-14)"
    february = metadata(retrain(build_defs([SPEC], build_resources(settings)), "2022-02-10"))
    assert february["missing_days"] == "none" and february["n_missing_days"] == 0


def test_a_window_with_too_few_rows_left_is_refused_and_names_the_gap(home, settings):
    result = retrain(build_defs([SPEC], build_resources(settings)), "2022-01-02")
    assert result.success, failure_message(result)
    assert metadata(result)["decision"] == "refused"
    message = metadata(result)["decision_reason"]
    assert (
        "green_taxi_duration: the window 2021-12-06 .. 2022-01-02 holds " in message
        and "usable trips (26 of its 28 days have no trips: 2021-12-06 .. 2021-12-31 (26 days)), "
        "fewer than retraining.min_rows=5000; refusing to train on so little"
        in message
    )
    client = mlflow.MlflowClient(R.model_registry(settings).uri())
    assert len(client.search_model_versions(f"name='{SPEC.name}'")) == 1


def test_mailer_describe_never_shows_the_password(settings, monkeypatch):
    monkeypatch.setenv("SMTP_PASSWORD", "pa55")  # read through dg.EnvVar
    configured = dataclasses.replace(
        settings, smtp_host="smtp.example.com", smtp_user="bot", smtp_password_set=True, smtp_starttls=True
    )
    # Initialized as Dagster does for a run or a tick (which resolves the dg.EnvVar).
    with dg.build_resources({"mailer": R.mailer(configured)}) as initialized:
        mailer = initialized.mailer
    assert mailer.describe() == "smtp://bot@smtp.example.com:587, STARTTLS"
    assert mailer.scrub("login pa55 refused") == "login *** refused"


def test_a_model_on_older_data_never_replaces_the_champion(home, settings, resources):
    """After a retrain on January's last 28 days, re-materializing an older month's
    duration_model registers that model but keeps the fresher champion."""
    assert retrain(build_defs([SPEC], resources), "2022-01-31").success  # v2, trained up to 2022-01-31
    result = train_through_assets(build_defs([SPEC], resources), SPEC, "2021-03")
    (event,) = result.get_asset_materialization_events()
    md = {k: v.value for k, v in event.event_specific_data.materialization.metadata.items()}
    assert md["decision"] == "not promoted"
    assert md["decision_reason"] == (
        "trained on data up to 2021-03-31, older than champion v2's (up to 2022-01-31)"
    )
    assert R.model_registry(settings).champion(SPEC.name) == "2"


def test_a_model_promoted_before_and_refused_later_keeps_its_promotion_tags(home, settings, resources):
    """After a retrain replaced v1, re-materializing v1's month finds the same model (same
    fingerprint, v1) and refuses it against the new champion: the refusal is in the run's
    metadata; v1's MLflow tags keep the decision that promoted it; champion and timeline stay."""
    registry, db = R.model_registry(settings), R.metrics_db(settings)
    v1_tags = registry.version_tags(SPEC.name, "1")
    assert v1_tags["decision"] == "promoted"
    assert retrain(build_defs([SPEC], resources), "2022-01-31").success
    assert registry.champion(SPEC.name) == "2"
    timeline = TimelineStore(db).entries(SPEC.name)

    result = train_through_assets(build_defs([SPEC], resources), SPEC, "2022-01")
    assert result.success, failure_message(result)
    (event,) = result.get_asset_materialization_events()
    md = {k: v.value for k, v in event.event_specific_data.materialization.metadata.items()}
    assert (md["model_version"], md["newly_registered"], md["decision"]) == ("1", False, "not promoted")
    assert re.fullmatch(
        r"worse than the champion \(candidate vs champion v2: RMSE [\d.]+ vs [\d.]+: \+[\d.]+ min "
        r"\[\+[\d.]+, \+[\d.]+\] at 95%, paired over [\d,]+ trips\)",
        md["decision_reason"],
    )
    assert registry.version_tags(SPEC.name, "1") == v1_tags
    assert registry.champion(SPEC.name) == "2"
    assert TimelineStore(db).entries(SPEC.name) == timeline
