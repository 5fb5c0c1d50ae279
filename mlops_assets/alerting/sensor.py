"""``drift_alert_sensor__<spec>``: new dummy_metrics rows → the spec's alert rules → one
email → a retrain.

Each evaluation (the daemon runs it every 30 s):

1. reads the spec's ``dummy_metrics`` rows computed since its cursor (with a small overlap,
   so a transaction that committed late is not missed);
2. judges them by each of the spec's alert rules (``monitoring.rules``: a metric, ``>`` or
   ``<``, a threshold, ``min_rows`` and ``for_days``; a spec without rules has the original
   one alone, ``prediction_drift`` above ``DRIFT_THRESHOLD``, default 0.20) and records each breach in
   ``alerts`` once: (model, rule, day) is unique, so ticks, daemon restarts and
   re-materializations never alert a rule's day twice;
3. emails every pending alert of the model in one message (drift lines in the original
   design's format, other rules' lines naming their metric); a failed send (SMTP down, auth
   refused) stays pending, is logged on the tick and retried on the next one, and does not
   stop the evaluation;
4. requests a run of the retrain asset for the latest breach day of a rule marked
   ``retrain``, unless the champion was trained on data up to that day already, or a retrain
   of this model is already in flight; the run key (model and day) makes the request
   idempotent, and the run's tags name the rule and the value that triggered it.
"""

import json
from datetime import UTC, datetime, timedelta

import dagster as dg

from mlops_assets.alerting import alerts, rules
from mlops_assets.alerting.mailer import Mailer, MailError
from mlops_assets.keys import retrained_key
from mlops_assets.metrics_db import MetricsDB
from mlops_assets.training.retrain import RETRAIN_TAG, TRIGGER_DAY_TAG, TRIGGER_RULE_TAG, TRIGGER_VALUE_TAG
from mlops_core.specs import ModelSpec

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


def retrain_request(spec: ModelSpec, instance: dg.DagsterInstance, metrics_db: MetricsDB, notes: list[str]):
    """A run request of the retrain asset for the latest breach of a ``retrain`` rule, or None
    (with the reason in ``notes``)."""
    latest = metrics_db.latest_retrain_breach(spec.name)
    if latest is None:
        return None
    timeline = metrics_db.timeline(spec.name)
    covered_until = timeline[-1]["window_end"] if timeline else None
    day = latest["timestamp"].date()
    if covered_until is not None and day <= covered_until:
        notes.append(f"latest breach {day} is covered by the champion (trained up to {covered_until})")
        return None
    if instance.get_runs(filters=dg.RunsFilter(tags={RETRAIN_TAG: spec.name}, statuses=IN_FLIGHT), limit=1):
        notes.append(f"a retrain of {spec.name} is already in flight; {day} waits for it")
        return None
    notes.append(f"requested a retrain for {day} ({alerts.rule_label(latest)}: {latest['value']:.4f})")
    return dg.RunRequest(
        run_key=f"retrain:{spec.name}:{day}",
        partition_key=day.isoformat(),
        asset_selection=[retrained_key(spec)],
        tags={
            RETRAIN_TAG: spec.name,
            TRIGGER_RULE_TAG: alerts.rule_label(latest),
            TRIGGER_VALUE_TAG: f"{latest['value']:.4f}",
            TRIGGER_DAY_TAG: day.isoformat(),
        },
    )


def send_pending(spec: ModelSpec, metrics_db: MetricsDB, mailer: Mailer, log, notes: list[str]) -> None:
    """Email every pending alert of the model in one message; a failure leaves them pending."""
    pending = metrics_db.alerts(spec.name, status="pending")
    if not pending:
        return
    ids = [a["id"] for a in pending]
    try:
        msg = mailer.compose(
            alerts.subject(spec.name, pending),
            alerts.body(spec.name, pending, list(spec.monitoring.rules), mailer.links(spec.name)),
        )
        where = mailer.send(msg)
    except MailError as exc:
        metrics_db.mark_alerts(ids, sent=False, error=str(exc))
        log.error(
            "%s: alert email for %d breach(es) NOT sent, will retry on the next tick: %s",
            spec.name,
            len(ids),
            exc,
        )
        notes.append(f"email failed ({len(ids)} pending): {exc}")
    else:
        metrics_db.mark_alerts(ids, sent=True, message_id=msg["Message-ID"])
        log.info("%s: alert email for %d breach(es) sent to %s", spec.name, len(ids), where)
        notes.append(f"emailed {len(ids)} breach(es)")


def evaluate(
    spec: ModelSpec,
    *,
    instance: dg.DagsterInstance,
    cursor: str | None,
    metrics_db: MetricsDB,
    mailer: Mailer,
    log,
) -> dg.SensorResult:
    seen_until = read_cursor(cursor)
    since = seen_until - CURSOR_OVERLAP if seen_until else None
    # New rows are those computed after the cursor; the overlap is only re-judged.
    n_new, newest = metrics_db.computed_since(spec.name, seen_until, strictly_after=True)
    breaches = []
    for rule in spec.monitoring.rules:
        breaches += rules.new_breaches(metrics_db, spec.name, rule, since)
    recorded = metrics_db.record_alerts(spec.name, breaches)
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
    send_pending(spec, metrics_db, mailer, log, notes)
    request = retrain_request(spec, instance, metrics_db, notes)

    if seen_until is not None:
        newest = max(newest, seen_until) if newest is not None else seen_until
    if request is not None:
        return dg.SensorResult(run_requests=[request], cursor=write_cursor(newest))
    judged = "; ".join(r.describe() for r in spec.monitoring.rules) or "none"
    return dg.SensorResult(
        skip_reason="; ".join(notes) or f"no new breach in {n_new} new row(s) (rules: {judged})",
        cursor=write_cursor(newest),
    )


def build_drift_sensor(spec: ModelSpec, job) -> dg.SensorDefinition:
    @dg.sensor(
        name=sensor_name(spec),
        job=job,
        minimum_interval_seconds=30,
        default_status=dg.DefaultSensorStatus.STOPPED,
        description=(
            f"Judges new `dummy_metrics` rows of {spec.name} by its alert rules "
            f"({'; '.join(r.describe() for r in spec.monitoring.rules) or 'none'}), emails each "
            "breach once (SMTP or the outbox), requests a retrain for the latest breach day of "
            "a rule marked retrain."
        ),
    )
    def drift_alert_sensor(context: dg.SensorEvaluationContext, metrics_db: MetricsDB, mailer: Mailer):
        return evaluate(
            spec,
            instance=context.instance,
            cursor=context.cursor,
            metrics_db=metrics_db,
            mailer=mailer,
            log=context.log,
        )

    return drift_alert_sensor
