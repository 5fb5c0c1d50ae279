"""``drift_alert_sensor__<spec>``: new dummy_metrics rows → the spec's alert rules → one
email → a retrain. (It judges every rule, quality ones too; the name is the original design's.)

Each evaluation (the daemon runs it every 30 s):

1. reads the spec's ``dummy_metrics`` rows computed since its cursor (with a small overlap,
   so a transaction that committed late is not missed);
2. judges them by each of the spec's alert rules (``monitoring.rules``: a metric, ``>`` or
   ``<``, a threshold, ``min_rows`` and ``for_days``; a spec without rules has the original
   one alone, ``prediction_drift`` above ``DRIFT_THRESHOLD``, default 0.20) and records each breach in
   ``alerts`` once: (model, rule, day) is unique, so ticks, daemon restarts and
   re-materializations never alert a rule's day twice;
3. folds the breaches into incidents (``alerting/incidents.py``: one per episode of a rule,
   resolved after ``alerting.resolve_after_days`` quiet monitored days or by a promotion or
   rollback) and emails, in one message, every incident that opened ([FIRING]), is due a
   reminder ([REMINDER], every ``alerting.repeat_every_days``) or resolved ([RESOLVED]), with
   the breach days' lines in the original design's format and their context; a failed send
   (SMTP down, auth refused) leaves them due, is logged on the tick and retried on the next
   one, and does not stop the evaluation;
4. asks the retraining policy (``training/retrain_policy.py``) whether to request a run of the
   retrain asset: once a breach episode has data after the change, once per episode (a retry
   after a cool-down); the tick says what it waits for, and until when. The run key (model,
   episode, attempt) makes the request idempotent; the run's tags name the rule and value
   that triggered it, the episode and the attempt.
"""

import json
from datetime import UTC, datetime, timedelta

import dagster as dg

from mlops_assets import constants as C
from mlops_assets.alerting import incident_flow, messages, rules
from mlops_assets.alerting.store import AlertStore
from mlops_assets.keys import retrained_key
from mlops_assets.lib.links import Links
from mlops_assets.lib.mailer import Mailer, MailError
from mlops_assets.lib.storage.engine import MetricsDB
from mlops_assets.monitoring.store import DailyMetricsStore
from mlops_assets.training import retrain_policy
from mlops_assets.training.retrain_asset import (
    ATTEMPT_TAG,
    EPISODE_TAG,
    RETRAIN_TAG,
    TRIGGER_DAY_TAG,
    TRIGGER_RULE_TAG,
    TRIGGER_VALUE_TAG,
    WINDOW_START_TAG,
)
from mlops_assets.training.store import DecisionStore, TimelineStore
from mlops_core.specs import AlertRule, ModelSpec

CURSOR_OVERLAP = timedelta(minutes=2)
IN_FLIGHT = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
]


def sensor_name(spec: ModelSpec) -> str:
    return f"drift_alert_sensor__{spec.name}"


def read_cursor(raw: str | None) -> datetime | None:
    """The cursor's ``computed_at`` as naive UTC (the table's clock), whether or not it was
    written with an offset (a hand-set cursor, another tool)."""
    if not raw:
        return None
    value = datetime.fromisoformat(json.loads(raw)["computed_at"])
    if value.tzinfo is not None:
        value = value.astimezone(UTC).replace(tzinfo=None)
    return value


def write_cursor(value: datetime | None) -> str | None:
    return json.dumps({"computed_at": value.isoformat()}) if value else None


def new_breaches(
    rows: DailyMetricsStore, model_name: str, rule: AlertRule, since: datetime | None
) -> list[dict]:
    """The breaches of ``rule`` that rows computed at or after ``since`` can make (all rows
    when ``since`` is None): the new qualifying rows, and for ``for_days`` > 1 the qualifying
    rows around them that can complete a run with them. Recording them is idempotent."""
    new = rows.qualifying(model_name, rule, computed_since=since)
    if rule.for_days == 1 or not new:
        return [rules.breach(rule, row) for row in new]
    around = rows.qualifying(
        model_name,
        rule,
        start=new[0].timestamp - rules.reach(rule),
        end=new[-1].timestamp + rules.reach(rule),
    )
    return rules.streak_ends(rule, [row.timestamp for row in new], {row.timestamp: row for row in around})


# How far back the retraining policy looks for a breach episode's days.
EPISODE_LOOKBACK = timedelta(days=400)


def retrain_request(spec: ModelSpec, instance: dg.DagsterInstance, db: MetricsDB, notes: list[str]):
    """A run request of the retrain asset when the retraining policy asks for one, else None
    (with the reason, and until when it waits, in ``notes``)."""
    alerts = AlertStore(db)
    latest = alerts.latest_retrain_breach(spec.name)
    if latest is None:
        return None
    since = latest["timestamp"] - EPISODE_LOOKBACK
    situation = retrain_policy.Situation(
        breaches=alerts.retrain_breaches(spec.name, since),
        scored=DailyMetricsStore(db).scored_days(spec.name, since),
        timeline=TimelineStore(db).entries(spec.name),
        decisions=DecisionStore(db).all(spec.name),
        in_flight=bool(
            instance.get_runs(
                filters=dg.RunsFilter(tags={RETRAIN_TAG: spec.name}, statuses=IN_FLIGHT), limit=1
            )
        ),
    )
    decision = retrain_policy.decide(spec, situation)
    if decision.note:
        notes.append(decision.note)
    if not isinstance(decision, retrain_policy.Retrain):
        return None
    breach = decision.breach
    tags = {
        RETRAIN_TAG: spec.name,
        TRIGGER_RULE_TAG: messages.rule_label(breach),
        TRIGGER_VALUE_TAG: f"{breach['value']:.4f}",
        TRIGGER_DAY_TAG: breach["timestamp"].date().isoformat(),
    }
    if decision.episode_start is not None:
        tags[EPISODE_TAG] = decision.episode_start.isoformat()
        tags[ATTEMPT_TAG] = str(decision.attempt)
    if decision.window_start is not None:
        tags[WINDOW_START_TAG] = decision.window_start.isoformat()
    return dg.RunRequest(
        run_key=decision.run_key,
        partition_key=decision.day.isoformat(),
        asset_selection=[retrained_key(spec)],
        tags=tags,
    )


def send_decisions(
    spec: ModelSpec, db: MetricsDB, mailer: Mailer, links: Links, log, notes: list[str]
) -> None:
    """Email the model decisions a person must hear of (rollbacks) in one message; a failure
    leaves them pending for the next tick."""
    store = DecisionStore(db)
    pending = store.to_notify(spec.name)
    if not pending:
        return
    ids = [d["id"] for d in pending]
    try:
        msg = mailer.compose(
            messages.decision_subject(spec.name, pending),
            messages.decision_body(spec.name, pending, messages.alert_links(spec, links)),
        )
        mailer.send(msg)
    except MailError as exc:
        store.mark(ids, sent=False, error=str(exc))
        log.error("%s: rollback email NOT sent, will retry on the next tick: %s", spec.name, exc)
        notes.append(f"rollback email failed: {exc}")
    else:
        store.mark(ids, sent=True, message_id=msg["Message-ID"])
        notes.append(f"emailed {len(ids)} rollback(s)")


def evaluate(
    spec: ModelSpec,
    *,
    instance: dg.DagsterInstance,
    cursor: str | None,
    metrics_db: MetricsDB,
    mailer: Mailer,
    links: Links,
    log,
) -> dg.SensorResult:
    seen_until = read_cursor(cursor)
    since = seen_until - CURSOR_OVERLAP if seen_until else None
    rows = DailyMetricsStore(metrics_db)
    # New rows are those computed after the cursor; the overlap is only re-judged.
    n_new, newest = rows.computed_since(spec.name, seen_until, strictly_after=True)
    breaches = []
    for rule in spec.monitoring.rules:
        breaches += new_breaches(rows, spec.name, rule, since)
    recorded = AlertStore(metrics_db).record(spec.name, breaches)
    for rule in spec.monitoring.rules:
        days = [b["timestamp"] for b in recorded if b["rule"] == rule.id]
        if days:
            log.info(
                "%s: %d new breach(es) of %s: %s",
                spec.name,
                len(days),
                rule.describe(),
                ", ".join(f"{d:%Y-%m-%d}" for d in days),
            )

    notes: list[str] = []
    latest = incident_flow.update(spec, metrics_db, log, notes)
    policy: list[str] = []
    request = retrain_request(spec, instance, metrics_db, policy)
    incident_flow.send(
        spec, metrics_db, mailer, links, log, notes, latest=latest, retrain_note="; ".join(policy) or None
    )
    send_decisions(spec, metrics_db, mailer, links, log, notes)
    notes += policy

    if seen_until is not None:
        newest = max(newest, seen_until) if newest is not None else seen_until
    if request is not None:
        return dg.SensorResult(run_requests=[request], cursor=write_cursor(newest))
    judged = "; ".join(r.describe() for r in spec.monitoring.rules) or "none"
    return dg.SensorResult(
        skip_reason="; ".join(notes) or f"no new breach in {n_new} new row(s) (rules: {judged})",
        cursor=write_cursor(newest),
    )


def build_alert_sensor(spec: ModelSpec) -> dg.SensorDefinition:
    @dg.sensor(
        name=sensor_name(spec),
        job_name=C.RETRAIN_JOB,
        minimum_interval_seconds=30,
        default_status=dg.DefaultSensorStatus.STOPPED,
        description=(
            f"Judges new `dummy_metrics` rows of {spec.name} by its alert rules "
            f"({'; '.join(r.describe() for r in spec.monitoring.rules) or 'none'}), emails each "
            "breach once (SMTP or the outbox) and each rollback, and requests a retrain once a "
            "breach episode of a rule marked retrain has data after the change to learn from."
        ),
    )
    def drift_alert_sensor(
        context: dg.SensorEvaluationContext, metrics_db: MetricsDB, mailer: Mailer, links: Links
    ):
        return evaluate(
            spec,
            instance=context.instance,
            cursor=context.cursor,
            metrics_db=metrics_db,
            mailer=mailer,
            links=links,
            log=context.log,
        )

    return drift_alert_sensor
