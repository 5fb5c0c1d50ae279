"""What an ops notice says: one line, and the detail a person needs to act, with where to look.

Plain values in, dicts of ``ops_notices`` columns out (no Dagster objects, so each is tested on
its own); the sensors (``ops/sensors.py``) read the values from Dagster. One email carries every
notice that is due: the subject counts them and names the first, the body lists them all.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from mlops_assets import constants as C
from mlops_assets.lib.links import Links

RUN_FAILURE = "run_failure"
LATE_DAY = "late_day"
DAY_LANDED = "day_landed"
RETRAIN_NOT_STARTED = "retrain_not_started"
# Model alerts say "Threshold breach ..."; the platform's own alerts start with this.
SUBJECT_PREFIX = "[mlops_assets platform]"
# How much of an error message goes into an email (a stack trace's first lines say what failed;
# the run's page in the Dagster UI has all of it).
MAX_ERROR_CHARS = 1500

PARTITION_TAG = "dagster/partition"
RANGE_START_TAG = "dagster/asset_partition_range_start"
RANGE_END_TAG = "dagster/asset_partition_range_end"
BACKFILL_TAG = "dagster/backfill"


def _stamp(value: datetime | None) -> str:
    if value is None:
        return "never"
    if value.tzinfo is not None:
        value = value.astimezone(UTC).replace(tzinfo=None)
    return f"{value:%Y-%m-%d %H:%M} UTC"


def _clip(text: str) -> str:
    text = text.strip()
    return text if len(text) <= MAX_ERROR_CHARS else text[:MAX_ERROR_CHARS].rstrip() + " […]"


def partitions(tags: dict[str, str]) -> str | None:
    """The partition or range a run covered, from its tags."""
    if tags.get(PARTITION_TAG):
        return tags[PARTITION_TAG]
    if tags.get(RANGE_START_TAG):
        return f"{tags[RANGE_START_TAG]}...{tags.get(RANGE_END_TAG, '?')}"
    return None


def run_failure(
    *,
    run_id: str,
    job_name: str,
    tags: dict[str, str],
    message: str,
    step_errors: list[tuple[str, str]],
    model_name: str | None,
    links: Links,
) -> dict:
    """A run that failed (or was marked failed by Dagster's run monitoring: it never started,
    or ran past its limit)."""
    covered = partitions(tags)
    summary = f"run failed: {job_name}" + (f" {covered}" if covered else "") + f" ({run_id[:8]})"
    lines = [f"Job: {job_name}", f"Run: {run_id}"]
    if model_name:
        lines.append(f"Model: {model_name}")
    if covered:
        lines.append(f"Partition(s): {covered}")
    if tags.get(BACKFILL_TAG):
        lines.append(f"Backfill: {tags[BACKFILL_TAG]}")
    lines.append(f"Dagster: {_clip(message)}")
    for step, error in step_errors:
        lines.append(f"Step {step} failed: {_clip(error)}")
    lines.append(f"Run page (logs, re-execute from failure): {links.run(run_id)}")
    return {
        "kind": RUN_FAILURE,
        "key": run_id,
        "model_name": model_name,
        "summary": summary,
        "detail": "\n".join(lines),
    }


def day_key(asset_path: list[str], day: date) -> str:
    return f"{'/'.join(asset_path)}@{day.isoformat()}"


def day_of(key: str) -> date:
    return date.fromisoformat(key.rsplit("@", 1)[1])


def late_day(
    *, model_name: str, asset_path: list[str], day: date, due: datetime, last_day: date | None, asset_url: str
) -> dict:
    """A day not monitored by its deadline (``ops/freshness.py``); told once per day."""
    name = "/".join(asset_path)
    return {
        "kind": LATE_DAY,
        "key": day_key(asset_path, day),
        "model_name": model_name,
        "summary": f"not monitored in time: {name} {day} (due {_stamp(due)})",
        "detail": "\n".join(
            [
                f"Model: {model_name}",
                f"Asset: {name}",
                f"Day: {day}, due {_stamp(due)}",
                f"Latest monitored day: {last_day or 'none'}",
                f"Is {C.MONITORING_SCHEDULE} on, and did its last run succeed? (A failed run is "
                "emailed on its own.) Backfill the missing day from the asset's partitions page: "
                f"{asset_url}",
            ]
        ),
    }


def day_landed(*, model_name: str, asset_path: list[str], day: date, asset_url: str) -> dict:
    """A day told late that has been monitored since."""
    name = "/".join(asset_path)
    return {
        "kind": DAY_LANDED,
        "key": day_key(asset_path, day),
        "model_name": model_name,
        "summary": f"monitored late, now in: {name} {day}",
        "detail": "\n".join(
            [f"Model: {model_name}", f"Asset: {name}", f"Day: {day}", f"Partitions: {asset_url}"]
        ),
    }


def retrain_not_started(
    *,
    run_id: str,
    model_name: str,
    status: str,
    created_at: datetime,
    now: datetime,
    tags: dict[str, str],
    links: Links,
) -> dict:
    """A retrain run requested by the alert sensor that has not started long after it was made
    (queued behind other runs, or the run queue is not working)."""
    waited = now - created_at
    minutes = int(waited / timedelta(minutes=1))
    trigger = ", ".join(
        f"{k.split('/')[-1]}={v}" for k, v in sorted(tags.items()) if k.startswith("mlops/trigger")
    )
    return {
        "kind": RETRAIN_NOT_STARTED,
        "key": run_id,
        "model_name": model_name,
        "summary": f"retrain not started: {model_name}, {status} for {minutes} min ({run_id[:8]})",
        "detail": "\n".join(
            [
                f"Model: {model_name}",
                f"Run: {run_id} ({status} since {_stamp(created_at)})",
                *([f"Requested for: {trigger}"] if trigger else []),
                "What holds it: the run queue (Deployment → Daemons: is the run queue daemon "
                "running?), the one-retrain-per-model limit, or all run slots busy.",
                f"Run page: {links.run(run_id)}",
                f"Queue: {links.dagster('runs?q[0]=status%3AQUEUED')}",
            ]
        ),
    }


def subject(notices: list[dict]) -> str:
    """The prefix, the first notice's line and how many more the email holds."""
    first = notices[0]["summary"]
    more = f" (+{len(notices) - 1} more)" if len(notices) > 1 else ""
    return f"{SUBJECT_PREFIX} {first}{more}"


def body(notices: list[dict]) -> str:
    head = f"{len(notices)} problem(s) the platform found in itself:" if len(notices) > 1 else None
    parts = [head] if head else []
    for n in notices:
        detail = "\n".join(f"  {line}" for line in n["detail"].splitlines())
        parts.append(f"* {n['summary']}\n{detail}")
    return "\n\n".join(parts) + "\n"
