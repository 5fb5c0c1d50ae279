"""Incidents (issue 22): an episode of a rule's breaches is one incident, announced when it
opens ([FIRING]), reminded every ``alerting.repeat_every_days`` monitored days while it lasts
([REMINDER]) and once when it resolves ([RESOLVED]).

The grouping rules are tested as pure functions first; then the real alert sensor on
PostgreSQL, day by day, with a real SMTP server on loopback (aiosmtpd): open → remind →
resolve, a restarted daemon between them, SMTP down at the resolve, a re-materialized day, two
rules at once, the HTML part and its chart, and the migration of existing ``alerts`` rows.
"""

import dataclasses
from datetime import date, datetime, timedelta

import dagster as dg
import pytest
import sqlalchemy as sa
from alembic import command

from mlops_assets import resources as R
from mlops_assets.alerting import incident_flow
from mlops_assets.alerting.incidents import Change, advance, due
from mlops_assets.alerting.store import AlertStore, IncidentStore
from mlops_assets.definitions import build_defs
from mlops_assets.lib.storage import migrate as MIG
from mlops_assets.lib.storage.engine import MetricsDB
from mlops_assets.monitoring import history_chart
from mlops_assets.resources import build_resources
from mlops_assets_tests.helpers import spec_with_rules
from mlops_assets_tests.test_alerting import SPEC, SmtpServer, put_rows, smtp_port, smtp_settings, tick
from mlops_core.specs import AlertRule

__all__ = ["smtp_port"]  # the fixture, imported for this module's tests

DRIFT = AlertRule(metric="prediction_drift", op=">", threshold=0.2)
D0 = date(2022, 1, 1)


def day(n: int) -> date:
    return D0 + timedelta(days=n - 1)


def alert(n: int, value: float = 0.3, alert_id: int | None = None) -> dict:
    return {"id": alert_id or n, "timestamp": datetime.combine(day(n), datetime.min.time()), "value": value}


def quiet(breaching: set[int], last: int) -> dict[date, bool]:
    return {day(n): n not in breaching for n in range(1, last + 1)}


# --- the grouping, as pure functions ---------------------------------------------------------
def test_an_episode_opens_continues_and_resolves_after_quiet_days():
    out = advance(DRIFT, [], [alert(n) for n in (2, 3, 5)], quiet({2, 3, 5}, 9), [], 3)
    (inc,) = out.changed
    assert (inc["opened_day"], inc["last_breach_day"], inc["breach_days"]) == (day(2), day(5), 3)
    # one quiet day (the 4th) inside it does not end it; the 6th, 7th and 8th do
    assert (inc["status"], inc["resolved_day"]) == ("resolved", day(8))
    assert inc["resolved_by"] == f"3 monitored day(s) without a breach ({day(6)} .. {day(8)})"
    assert set(out.assigned) == {2, 3, 5}


def test_quiet_days_between_breaches_of_one_batch_make_two_incidents():
    """A month backfilled in one run: the incidents are what they would have been day by day."""
    out = advance(DRIFT, [], [alert(n) for n in (1, 2, 7, 8)], quiet({1, 2, 7, 8}, 8), [], 3)
    first, second = sorted(out.changed, key=lambda i: i["opened_day"])
    assert (first["opened_day"], first["resolved_day"]) == (day(1), day(5))
    assert (second["opened_day"], second["status"]) == (day(7), "open")


def test_a_day_not_monitored_or_too_small_neither_continues_nor_ends_it():
    days = quiet({1}, 5)
    del days[day(3)]  # not monitored
    days[day(4)] = False  # too few trips for the rule (not quiet, not a breach)
    out = advance(DRIFT, [], [alert(1)], days, [], 3)
    (inc,) = out.changed
    assert inc["status"] == "open"  # quiet so far: the 2nd and the 5th only
    days[day(6)] = True
    out = advance(DRIFT, [], [alert(1)], days, [], 3)
    assert out.changed[0]["resolved_day"] == day(6)  # the 2nd, 5th and 6th


def test_a_promotion_after_it_opened_resolves_it_once_its_model_is_monitored():
    change = Change(day(5), "v2 promoted")
    out = advance(DRIFT, [], [alert(n) for n in (1, 2, 3, 4)], quiet({1, 2, 3, 4}, 4), [change], 3)
    assert out.changed[0]["status"] == "open"  # v2's first day is not monitored yet
    out = advance(DRIFT, [], [alert(n) for n in (1, 2, 3, 4)], quiet({1, 2, 3, 4}, 5), [change], 3)
    inc = out.changed[0]
    assert (inc["resolved_day"], inc["resolved_by"]) == (
        day(5),
        f"v2 promoted, in effect from {day(5)}, with no breach since",
    )
    # v2 breaching too: the incident goes on (the change did not help)
    out = advance(DRIFT, [], [alert(n) for n in (1, 2, 3, 4, 5)], quiet({1, 2, 3, 4, 5}, 6), [change], 3)
    assert out.changed[0]["status"] == "open"


def test_a_re_materialized_day_inside_a_resolved_incident_joins_it():
    (inc,) = advance(DRIFT, [], [alert(n) for n in (1, 3)], quiet({1, 3}, 8), [], 3).changed
    inc["id"] = 10
    out = advance(DRIFT, [inc], [alert(2, value=0.5, alert_id=99)], quiet({1, 2, 3}, 8), [], 3)
    assert out.assigned[99] is inc and not out.opened
    assert (inc["breach_days"], inc["worst_value"], inc["worst_day"]) == (3, 0.5, day(2))


def test_what_is_due():
    inc = {"status": "open", "notified": None, "notified_day": None}
    assert due(inc, day(1), 7) == "firing"
    inc |= {"notified": "firing", "notified_day": day(1)}
    assert due(inc, day(7), 7) is None
    assert due(inc, day(8), 7) == "reminder"
    inc |= {"status": "resolved"}
    assert due(inc, day(8), 7) == "resolved"
    inc |= {"notified": "resolved"}
    assert due(inc, day(30), 7) is None


# --- the real sensor, day by day, on PostgreSQL with a real SMTP server -----------------------
def plain(msg) -> str:
    return msg.get_body(preferencelist=("plain",)).get_content()


def breach_lines(msg) -> list[str]:
    return [line for line in plain(msg).splitlines() if line.startswith("Threshold breach")]


@pytest.fixture
def on_postgres(settings, postgres_url, smtp_port):
    return smtp_settings(dataclasses.replace(settings, metrics_database_url=postgres_url), smtp_port)


def iso(n: int) -> str:
    return day(n).isoformat()


@pytest.mark.postgres
def test_open_remind_resolve_day_by_day_across_restarts_and_an_smtp_outage(on_postgres, smtp_port):
    db = R.metrics_db(on_postgres)
    instance = dg.DagsterInstance.ephemeral()
    defs = build_defs([SPEC], build_resources(on_postgres))
    drift = {n: 0.30 + n / 1000 for n in range(1, 11)} | {n: 0.05 for n in range(11, 14)}
    cursor = None
    with SmtpServer(smtp_port) as inbox:
        for n in range(1, 13):
            put_rows(db, {iso(n): drift[n]})
            if n == 5:  # the daemon restarts: new definitions, no cursor
                defs, cursor = build_defs([SPEC], build_resources(on_postgres)), None
            result = tick(defs, instance, cursor)
            cursor = result.cursor
            if n == 3:  # a re-materialized day inside the open incident: nothing new
                put_rows(db, {iso(2): drift[2]})
                cursor = tick(defs, instance, cursor).cursor
        subjects = [m["Subject"] for m in inbox.messages]
        assert subjects == [
            "[FIRING] green_taxi_duration: prediction_drift > 0.20 opened 2022-01-01 (worst 0.3010)",
            "[REMINDER] green_taxi_duration: prediction_drift > 0.20 open since 2022-01-01, "
            "8 breach day(s) (worst 0.3080)",
        ]
        assert breach_lines(inbox.messages[0]) == ["Threshold breach (>0.20): 2022-01-01 00:00 — 0.3010"]
        # the reminder lists the days not emailed before, in the original form
        assert breach_lines(inbox.messages[1]) == [
            f"Threshold breach (>0.20): 2022-01-{n:02d} 00:00 — {0.30 + n / 1000:.4f}" for n in range(2, 9)
        ]
        reminder = plain(inbox.messages[1])
        assert "day 8 of it" in reminder
        assert "episode since 2022-01-01: waiting for data after the change" in reminder

    # SMTP is down on the day the incident resolves (the third quiet day): nothing is lost ...
    put_rows(db, {iso(13): drift[13]})
    failed = tick(defs, instance, cursor)
    assert "incident email failed" in failed.skip_reason.skip_message
    (inc,) = IncidentStore(db).all(SPEC.name)
    assert (inc["status"], inc["resolved_day"], inc["notified"], inc["attempts"]) == (
        "resolved",
        day(13),
        "reminder",
        1,
    )
    # ... and it goes out once SMTP is back, once.
    with SmtpServer(smtp_port) as inbox:
        cursor = tick(defs, instance, failed.cursor).cursor
        tick(defs, instance, cursor)
        tick(build_defs([SPEC], build_resources(on_postgres)), instance, None)
        (resolved,) = inbox.messages
    assert resolved["Subject"] == (
        "[RESOLVED] green_taxi_duration: prediction_drift > 0.20 resolved 2022-01-13 after 13 day(s) "
        "(worst 0.3100)"
    )
    text = plain(resolved)
    assert "resolved on 2022-01-13 after 13 day(s), 10 breach day(s), worst 0.3100 on 2022-01-10" in text
    assert "Resolved by: 3 monitored day(s) without a breach (2022-01-11 .. 2022-01-13)" in text
    assert breach_lines(resolved) == [
        f"Threshold breach (>0.20): 2022-01-{n:02d} 00:00 — {0.30 + n / 1000:.4f}" for n in (9, 10)
    ]
    (inc,) = IncidentStore(db).all(SPEC.name)
    assert (inc["notified"], inc["emails_sent"], inc["breach_days"]) == ("resolved", 3, 10)
    alerts = AlertStore(db).all(SPEC.name)
    assert len(alerts) == 10 and {a["status"] for a in alerts} == {"sent"}
    assert {a["incident_id"] for a in alerts} == {inc["id"]}


@pytest.mark.postgres
def test_two_rules_at_once_are_one_email_with_context_html_and_the_incidents_chart(on_postgres, smtp_port):
    spec = spec_with_rules(
        [
            {"metric": "prediction_drift", "op": ">", "threshold": 0.2, "retrain": True},
            {"metric": "rmse_ratio", "op": ">", "threshold": 1.5},
        ]
    )
    settings = dataclasses.replace(
        on_postgres, mlflow_ui_url="http://mlflow.example", reports_url="http://r.example"
    )
    db = R.metrics_db(settings)
    extra = {
        iso(n): {"rmse_ratio": 1.2, "rmse": 9.0, "mean_error": 0.4, "drifted_columns": ""} for n in (1, 2)
    }
    extra[iso(3)] = {
        "rmse_ratio": 1.7,
        "rmse": 12.0,
        "mean_error": 2.5,
        "drifted_columns": "PULocationID,trip_distance",
    }
    put_rows(db, {iso(1): 0.05, iso(2): 0.06, iso(3): 0.41}, extra=extra)
    defs = build_defs([spec], build_resources(settings))
    with SmtpServer(smtp_port) as inbox:
        tick(defs, dg.DagsterInstance.ephemeral())
    (msg,) = inbox.messages
    assert msg["Subject"] == (
        "[FIRING] green_taxi_duration: prediction_drift > 0.20 opened 2022-01-03 (worst 0.4100); "
        "rmse_ratio > 1.50 opened 2022-01-03 (worst 1.7000)"
    )
    text = plain(msg)
    assert breach_lines(msg) == [
        "Threshold breach (>0.20): 2022-01-03 00:00 — 0.4100",
        "Threshold breach rmse_ratio (>1.50): 2022-01-03 00:00 — 1.7000",
    ]
    assert (
        "2,000 trips, model v1; prediction_drift 0.4100, rmse_ratio 1.70, rmse 12.00 min, "
        "mean_error +2.50 min" in text
    )
    assert "drifted columns: PULocationID, trip_distance" in text
    assert "report: http://r.example/green_taxi_duration/2022-01-03.html" in text
    assert "MLflow: http://mlflow.example/#/models/green_taxi_duration/versions/1" in text
    assert "partition=2022-01-03" in text
    assert "Retrain: this rule does not request one." in text  # the rmse_ratio rule

    # multipart/alternative: the text first, then the HTML with one inline chart per incident
    assert msg.get_content_type() == "multipart/alternative"
    assert [p.get_content_type() for p in msg.iter_parts()] == ["text/plain", "multipart/related"]
    html = msg.get_body(preferencelist=("html",)).get_content()
    images = [p for p in msg.walk() if p.get_content_type() == "image/png"]
    incidents = IncidentStore(db).all(spec.name)
    assert sorted(p["Content-ID"] for p in images) == sorted(f"<incident-{i['id']}>" for i in incidents)
    for inc in incidents:
        assert f'src="cid:incident-{inc["id"]}"' in html
    # the image is the incident's: the history chart cut to its days, drawn again here
    history = history_chart.read_history(spec, db)
    drift_inc = next(i for i in incidents if i["rule"] == "prediction_drift")
    png = next(p for p in images if p["Content-ID"] == f"<incident-{drift_inc['id']}>").get_content()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert png == incident_flow.incident_chart(history, drift_inc, day(3))


@pytest.mark.postgres
def test_existing_alerts_migrate_into_incidents_without_anything_sent_again(
    settings, postgres_url, smtp_port
):
    engine = sa.create_engine(postgres_url)
    with engine.begin() as conn:
        command.upgrade(MIG.alembic_config(conn), "0002_retraining_policy")
    db = MetricsDB(url=postgres_url)
    # What the release before incidents recorded: an episode emailed and over, one emailed and
    # still open, and a breach still pending (SMTP was down).
    on_pg = dataclasses.replace(settings, metrics_database_url=postgres_url)
    values = {iso(n): 0.05 for n in range(1, 21)}
    values |= {iso(n): 0.3 for n in (2, 3, 4, 15, 16, 20)}
    put_rows_at_0002(engine, values)
    with engine.begin() as conn:
        for n in (2, 3, 4, 15, 16, 20):
            conn.execute(
                sa.text(
                    "insert into alerts (model_name, rule, metric, op, threshold, for_days, timestamp, "
                    "value, "
                    "model_version, retrain, detected_at, status, attempts, message_id) values "
                    "('green_taxi_duration', 'prediction_drift', 'prediction_drift', '>', 0.2, 1, :ts, 0.3, "
                    "'1', true, now(), :status, 1, :mid)"
                ),
                {
                    "ts": f"{iso(n)} 00:00",
                    "status": "pending" if n == 20 else "sent",
                    "mid": None if n == 20 else f"<m{n // 10}@x>",
                },
            )
    changes = MIG.migrate(engine)
    assert [c.split(":")[0] for c in changes] == [
        "applied revision 0003_incidents",
        "applied revision 0004_segment_metrics",
        "applied revision 0005_ops_notices",
    ]
    store = IncidentStore(db)
    # 2-4 (quiet 5-7), 15-16 (quiet 17-19), 20: three episodes
    spans = [
        (i["opened_day"], i["last_breach_day"], i["status"], i["resolved_day"], i["notified"])
        for i in store.all(SPEC.name)
    ]
    assert spans == [
        (day(2), day(4), "resolved", day(7), "resolved"),
        (day(15), day(16), "resolved", day(19), "resolved"),
        # the pending breach of the 20th: announced on the next tick, as it would have been
        (day(20), day(20), "open", None, None),
    ]
    assert [i["emails_sent"] for i in store.all(SPEC.name)] == [1, 1, 0]
    assert {a["incident_id"] for a in AlertStore(db).all(SPEC.name)} == {
        i["id"] for i in store.all(SPEC.name)
    }
    with SmtpServer(smtp_port) as inbox:
        tick(
            build_defs([SPEC], build_resources(smtp_settings(on_pg, smtp_port))),
            dg.DagsterInstance.ephemeral(),
        )
    (msg,) = inbox.messages  # the open incident, once; nothing about the two before it
    assert (
        msg["Subject"]
        == "[FIRING] green_taxi_duration: prediction_drift > 0.20 opened 2022-01-20 (worst 0.3000)"
    )
    assert breach_lines(msg) == ["Threshold breach (>0.20): 2022-01-20 00:00 — 0.3000"]


def put_rows_at_0002(engine: sa.Engine, values: dict[str, float]) -> None:
    """dummy_metrics rows as a database at revision 0002 holds them (its columns only)."""
    with engine.begin() as conn:
        for iso_day, value in values.items():
            conn.execute(
                sa.text(
                    "insert into dummy_metrics (model_name, timestamp, n_rows, n_scored, model_version, "
                    "prediction_drift, computed_at) "
                    "values ('green_taxi_duration', :ts, 2000, 2000, '1', :v, now())"
                ),
                {"ts": f"{iso_day} 00:00", "v": value},
            )
