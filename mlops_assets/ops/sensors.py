"""The ops sensors: a failed run, a day not monitored by its deadline and a retrain that never
started each reach a person once, through the same transport as the model alerts (the
``ops_mailer``: ``ALERT_EMAIL_TO_OPS``, default ``ALERT_EMAIL_TO``; subjects start with
``[mlops_assets platform]``).

* ``ops_run_watch`` (Dagster's ``run_failure_sensor`` over every job of the code location; its
  cursor is Dagster's) records each failed run as an ops notice. Runs that Dagster's run
  monitoring marks failed (not started within ``start_timeout_seconds``, or past
  ``max_runtime_seconds``: dagster.yaml) are failed runs too. A retrain refused by the policy
  succeeds, so it is not one.
* ``ops_freshness_watch`` judges each spec's ``monitored_in_time`` check (``ops/checks.py``),
  reports it to Dagster when the result changes, and records each late day, then its landing.
* ``ops_watch`` records each retrain run still waiting to start ``RETRAIN_START_LIMIT_SECONDS``
  after it was requested (and names it in its tick), then emails every pending notice in one
  message.

``ops_watch`` is the only sender. A notice is recorded once ((kind, key) is unique in
``ops_notices``; a run's id, a day) whatever the ticks, restarts or cursors that see its event
again, and stays pending until an email carrying it went out: several failures in one tick are
one email, and an SMTP outage delays it, never drops it.
"""

from __future__ import annotations

from datetime import UTC, datetime

import dagster as dg

from mlops_assets import constants as C
from mlops_assets.lib.links import Links
from mlops_assets.lib.mailer import Mailer, MailError
from mlops_assets.lib.storage.engine import MetricsDB
from mlops_assets.ops import notices as N
from mlops_assets.ops.checks import check_evaluation, evaluate_freshness, freshness_check_keys, schedule_on
from mlops_assets.ops.freshness import due_at
from mlops_assets.ops.policy import OpsPolicy
from mlops_assets.ops.store import NoticeStore
from mlops_assets.training.retrain_asset import RETRAIN_TAG
from mlops_core.specs import ModelSpec
from mlops_core.text import scrub, url_password

WAITING = [dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.NOT_STARTED, dg.DagsterRunStatus.STARTING]


# --- failed runs ------------------------------------------------------------------------------
def run_model(run: dg.DagsterRun) -> str | None:
    """The model spec a run is about: its retrain tag, else the first part of its assets' keys
    when they all share one."""
    if run.tags.get(RETRAIN_TAG):
        return run.tags[RETRAIN_TAG]
    names = {key.path[0] for key in run.asset_selection or () if len(key.path) > 1}
    return names.pop() if len(names) == 1 else None


def _error_text(event: dg.DagsterEvent) -> str:
    """What went wrong in a step, without the stack traces (the run's page has them): the
    error's first line, and the first line of its root cause when Dagster wrapped it."""
    error = getattr(event.event_specific_data, "error", None)
    if error is None:
        return event.message or "the step failed"
    root = error
    while root.cause is not None:
        root = root.cause
    outer = (error.message.strip().splitlines() or [error.cls_name])[0]
    if root is error:
        return outer
    return f"{outer}\n  caused by {(root.message.strip().splitlines() or [root.cls_name])[0]}"


def failure_notice(
    context: dg.RunFailureSensorContext, mailer: Mailer, links: Links, metrics_db: MetricsDB
) -> dict:
    run = context.dagster_run
    notice = N.run_failure(
        run_id=run.run_id,
        job_name=run.job_name,
        tags=dict(run.tags),
        message=(context.failure_event.message or "the run failed").strip().splitlines()[0],
        step_errors=[(e.step_key or "?", _error_text(e)) for e in context.get_step_failure_events()],
        model_name=run_model(run),
        links=links,
    )
    # An error can quote a connection string or a password: never store or email one.
    detail = scrub(notice["detail"], mailer.smtp_password, url_password(metrics_db.url))
    return {**notice, "detail": detail}


def build_run_failure_sensor() -> dg.SensorDefinition:
    @dg.run_failure_sensor(
        name=C.RUN_FAILURE_SENSOR,
        minimum_interval_seconds=30,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=(
            "Records every failed run of the code location (a step's error, a run that never "
            "started or ran past its limit) as an ops notice; ops_watch emails it."
        ),
    )
    def ops_run_watch(
        context: dg.RunFailureSensorContext, metrics_db: MetricsDB, ops_mailer: Mailer, links: Links
    ):
        new = NoticeStore(metrics_db).record([failure_notice(context, ops_mailer, links, metrics_db)])
        if new:
            context.log.info("recorded: %s", new[0]["summary"])

    return ops_run_watch


# --- days not monitored in time -------------------------------------------------------------
def _latest_evaluation(instance: dg.DagsterInstance, key: dg.AssetCheckKey):
    record = instance.get_latest_asset_check_evaluation_record(key)
    if record is None or record.event is None or record.event.dagster_event is None:
        return None
    return record.event.dagster_event.event_specific_data


def _changed(previous, evaluation: dg.AssetCheckEvaluation) -> bool:
    if previous is None or getattr(previous, "passed", None) is None:
        return True
    before = previous.metadata.get("late_days")
    return previous.passed != evaluation.passed or (
        getattr(before, "value", None) != evaluation.metadata["late_days"].value
    )


def freshness_watch(
    specs: list[ModelSpec],
    *,
    instance: dg.DagsterInstance,
    metrics_db: MetricsDB,
    policy: OpsPolicy,
    links: Links,
    now: datetime | None = None,
) -> dg.SensorResult:
    """Judge every ``monitored_in_time`` check at ``now``; record late days and landings."""
    now = now or datetime.now(UTC)
    on = schedule_on(instance)
    store = NoticeStore(metrics_db)
    events, found, notes = [], [], []
    for spec in specs:
        for key in freshness_check_keys(spec):
            result, days = evaluate_freshness(instance, key.asset_key, policy, now, on)
            evaluation = check_evaluation(key.asset_key, result, policy)
            if _changed(_latest_evaluation(instance, key), evaluation):
                events.append(evaluation)
            path = list(key.asset_key.path)
            url = links.asset_partitions(key.asset_key)
            last = max(days) if days else None
            for day in result.late:
                due = due_at(day, policy.deadline())
                found.append(
                    N.late_day(
                        model_name=spec.name, asset_path=path, day=day, due=due, last_day=last, asset_url=url
                    )
                )
            prefix = f"{'/'.join(path)}@"
            waiting = set(store.keys(N.LATE_DAY, spec.name)) - set(store.keys(N.DAY_LANDED, spec.name))
            for k in sorted(k for k in waiting if k.startswith(prefix)):
                day = N.day_of(k)
                if day in days:
                    found.append(N.day_landed(model_name=spec.name, asset_path=path, day=day, asset_url=url))
            if result.live and result.late:
                notes.append(f"{'/'.join(path)}: {result.describe()}")
    new = store.record(found)
    notes += [f"new: {n['summary']}" for n in new]
    if events:
        notes.append("; ".join(f"{'/'.join(e.asset_key.path)}: {e.description}" for e in events))
    return dg.SensorResult(asset_events=events, skip_reason="; ".join(notes) or "no change")


def build_freshness_sensor(specs: list[ModelSpec]) -> dg.SensorDefinition:
    @dg.sensor(
        name=C.FRESHNESS_SENSOR,
        minimum_interval_seconds=60,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=(
            "Judges each spec's monitored_in_time check on drift_metrics and dummy_metrics (every "
            "day of the last FRESHNESS_WINDOW_DAYS monitored by FRESHNESS_DEADLINE UTC), and "
            "records each late day, and its landing, for ops_watch to email."
        ),
    )
    def ops_freshness_watch(
        context: dg.SensorEvaluationContext, metrics_db: MetricsDB, ops_policy: OpsPolicy, links: Links
    ):
        return freshness_watch(
            specs, instance=context.instance, metrics_db=metrics_db, policy=ops_policy, links=links
        )

    return ops_freshness_watch


# --- retrains that never started, and the one sender ----------------------------------------
def unstarted_retrain_notices(
    specs: list[ModelSpec], instance: dg.DagsterInstance, policy: OpsPolicy, links: Links, now: datetime
) -> list[dict]:
    """A notice for each retrain run still waiting to start past the limit."""
    out = []
    for spec in specs:
        records = instance.get_run_records(
            filters=dg.RunsFilter(tags={RETRAIN_TAG: spec.name}, statuses=WAITING)
        )
        for record in records:
            created = record.create_timestamp
            created = created if created.tzinfo else created.replace(tzinfo=UTC)
            if now - created < policy.retrain_start_limit():
                continue
            run = record.dagster_run
            out.append(
                N.retrain_not_started(
                    run_id=run.run_id,
                    model_name=spec.name,
                    status=run.status.value,
                    created_at=created,
                    now=now,
                    tags=dict(run.tags),
                    links=links,
                )
            )
    return out


def send_pending(store: NoticeStore, mailer: Mailer, log, notes: list[str]) -> None:
    """Email every pending notice in one message; a failure leaves them pending."""
    pending = store.pending()
    if not pending:
        return
    ids = [n["id"] for n in pending]
    try:
        msg = mailer.compose(N.subject(pending), N.body(pending))
        mailer.send(msg)
    except MailError as exc:
        store.mark(ids, sent=False, error=str(exc))
        log.error("platform email NOT sent (%d notice(s)), will retry on the next tick: %s", len(ids), exc)
        notes.append(f"platform email failed, {len(ids)} notice(s) pending: {exc}")
    else:
        store.mark(ids, sent=True, message_id=msg["Message-ID"])
        notes.append(f"emailed {len(ids)} platform notice(s)")


def watch(
    specs: list[ModelSpec],
    *,
    instance: dg.DagsterInstance,
    metrics_db: MetricsDB,
    mailer: Mailer,
    policy: OpsPolicy,
    links: Links,
    log,
    now: datetime | None = None,
) -> dg.SkipReason:
    now = now or datetime.now(UTC)
    store = NoticeStore(metrics_db)
    late = unstarted_retrain_notices(specs, instance, policy, links, now)
    notes = [f"waiting: {n['summary']}" for n in late]  # named on every tick while it waits
    store.record(late)
    send_pending(store, mailer, log, notes)
    return dg.SkipReason("; ".join(notes) or "nothing to tell")


def build_watch_sensor(specs: list[ModelSpec]) -> dg.SensorDefinition:
    @dg.sensor(
        name=C.OPS_WATCH_SENSOR,
        minimum_interval_seconds=30,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=(
            "Records each retrain run not started RETRAIN_START_LIMIT_SECONDS after its request, "
            "then emails every pending platform notice (failed runs, late days, retrains not "
            "started) in one message, retrying a failed send on the next tick."
        ),
    )
    def ops_watch(
        context: dg.SensorEvaluationContext,
        metrics_db: MetricsDB,
        ops_mailer: Mailer,
        ops_policy: OpsPolicy,
        links: Links,
    ):
        return watch(
            specs,
            instance=context.instance,
            metrics_db=metrics_db,
            mailer=ops_mailer,
            policy=ops_policy,
            links=links,
            log=context.log,
        )

    return ops_watch
