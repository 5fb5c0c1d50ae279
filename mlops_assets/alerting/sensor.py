"""``drift_alert_sensor__<spec>``: new dummy_metrics rows → breaches → one email → a retrain.

Each evaluation (the daemon runs it every 30 s):

1. reads the spec's ``dummy_metrics`` rows computed since its cursor (with a small overlap,
   so a transaction that committed late is not missed);
2. compares ``prediction_drift`` with the spec's threshold (its own, else ``DRIFT_THRESHOLD``,
   default 0.20, given to the spec when it was loaded) and records each breach in
   ``drift_alerts`` once: (model, day) is unique, so ticks, daemon restarts and
   re-materializations never alert a day twice;
3. emails every pending alert of the model in one message (the original design's line
   format); a failed send (SMTP down, auth refused) stays pending, is logged on the tick
   and retried on the next one, and does not stop the evaluation;
4. requests a run of the retrain asset for the latest breach day, unless the champion was
   trained on data up to that day already, or a retrain of this model is already in flight;
   the run key (model and day) makes the request idempotent.
"""

import json
from datetime import datetime, timedelta

import dagster as dg

from mlops_assets.alerting import alerts
from mlops_assets.alerting.mailer import Mailer, MailError
from mlops_assets.keys import retrained_key
from mlops_assets.metrics_db import MetricsDB
from mlops_assets.training.retrain import RETRAIN_TAG
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
    if not raw:
        return None
    return datetime.fromisoformat(json.loads(raw)["computed_at"])


def write_cursor(value: datetime | None) -> str | None:
    return json.dumps({"computed_at": value.isoformat()}) if value else None


def evaluate(
    spec: ModelSpec,
    *,
    instance: dg.DagsterInstance,
    cursor: str | None,
    metrics_db: MetricsDB,
    mailer: Mailer,
    log,
) -> dg.SensorResult:
    threshold = spec.drift_threshold()
    seen_until = read_cursor(cursor)
    since = seen_until - CURSOR_OVERLAP if seen_until else None
    n_rows, newest, breaches = metrics_db.breaches_computed_since(spec.name, since, threshold)
    new_days = metrics_db.record_breaches(spec.name, breaches, threshold)
    if new_days:
        log.info(
            "%s: %d new breach(es) of %.2f: %s",
            spec.name,
            len(new_days),
            threshold,
            ", ".join(f"{d:%Y-%m-%d}" for d in new_days),
        )

    notes = []
    pending = metrics_db.alerts(spec.name, status="pending")
    if pending:
        ids = [a["id"] for a in pending]
        try:
            msg = mailer.compose(
                alerts.subject(spec.name, pending, threshold),
                alerts.body(spec.name, pending, threshold, mailer.links(spec.name)),
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

    run_requests = []
    latest = metrics_db.latest_breach_day(spec.name)
    if latest is not None:
        timeline = metrics_db.timeline(spec.name)
        covered_until = timeline[-1]["window_end"] if timeline else None
        day = latest.date()
        if covered_until is not None and day <= covered_until:
            notes.append(f"latest breach {day} is covered by the champion (trained up to {covered_until})")
        elif instance.get_runs(
            filters=dg.RunsFilter(tags={RETRAIN_TAG: spec.name}, statuses=IN_FLIGHT), limit=1
        ):
            notes.append(f"a retrain of {spec.name} is already in flight; {day} waits for it")
        else:
            run_requests.append(
                dg.RunRequest(
                    run_key=f"retrain:{spec.name}:{day}",
                    partition_key=day.isoformat(),
                    asset_selection=[retrained_key(spec)],
                    tags={RETRAIN_TAG: spec.name},
                )
            )
            notes.append(f"requested a retrain for {day}")

    if seen_until is not None:
        newest = max(newest, seen_until) if newest is not None else seen_until
    if run_requests:
        return dg.SensorResult(run_requests=run_requests, cursor=write_cursor(newest))
    return dg.SensorResult(
        skip_reason="; ".join(notes) or f"no new breach of {threshold:.2f} in {n_rows} new row(s)",
        cursor=write_cursor(newest),
    )


def build_drift_sensor(spec: ModelSpec, job) -> dg.SensorDefinition:
    @dg.sensor(
        name=sensor_name(spec),
        job=job,
        minimum_interval_seconds=30,
        default_status=dg.DefaultSensorStatus.STOPPED,
        description=(
            f"Compares new `dummy_metrics` rows of {spec.name} with the drift threshold, emails "
            "each breach once (SMTP or the outbox), requests a retrain for the latest breach day."
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
