"""The demo's closing story: one row per monitored day, the model timeline, the alerts and
where to look next."""

from __future__ import annotations

import os

from mlops_assets import constants as C
from mlops_assets import resources as R
from mlops_assets.alerting.store import AlertStore, IncidentStore
from mlops_assets.demo.output import fired, say, table
from mlops_assets.monitoring.segments import top_segments_lines
from mlops_assets.monitoring.store import DailyMetricsStore
from mlops_assets.settings import Settings
from mlops_assets.training.store import TimelineStore
from mlops_core.daily_metrics import DailyMetrics
from mlops_core.specs import ModelSpec


def print_story(spec: ModelSpec, settings: Settings, retrains: list[dict]) -> None:
    db = R.metrics_db(settings)
    rows = DailyMetricsStore(db).rows(spec.name)
    all_alerts = AlertStore(db).all(spec.name)
    by_day: dict = {}
    for a in all_alerts:
        by_day.setdefault(a["timestamp"], []).append(a)
    timeline = TimelineStore(db).entries(spec.name)
    starts = {t["effective_from"]: t for t in timeline}
    rules = {r.metric: r for r in spec.monitoring.rules}
    say(
        "Timeline (one row per monitored day; ! marks a value that counts towards its rule: past "
        "the threshold, on a day with the rule's min_rows trips)"
    )
    table_rows = []

    def cell(row: DailyMetrics, column: str, digits: int) -> str:
        value = getattr(row, column)
        if value is None:
            return "n/a"
        rule = rules.get(column)
        mark = "!" if rule is not None and rule.qualifies(value, row.n_rows) else ""
        return f"{value:.{digits}f}{mark}"

    for row in rows:
        day = row.timestamp.date()
        event = ""
        if day in starts:
            t = starts[day]
            event = f"v{t['model_version']} in effect ({t['reason']})"
        table_rows.append(
            {
                "day": str(day),
                "trips": row.n_rows,
                "drift": cell(row, "prediction_drift", 4),
                "rmse": cell(row, "rmse", 2),
                "rmse_ratio": cell(row, "rmse_ratio", 2),
                "model": f"v{row.model_version}",
                "rules fired": fired(by_day.get(row.timestamp, [])),
                "model change": event,
            }
        )
    say(table(table_rows))
    say()
    say("Model timeline (which version is in effect from which day)")
    say(
        table(
            [
                {
                    "from": str(t["effective_from"]),
                    "version": f"v{t['model_version']}",
                    "trained up to": str(t["window_end"]),
                    "holdout RMSE": "" if t["holdout_rmse"] is None else f"{t['holdout_rmse']:.3f}",
                    "replaced": "" if t["previous_version"] is None else f"v{t['previous_version']}",
                    "why": t["reason"],
                }
                for t in timeline
            ]
        )
    )
    say()
    print_where(spec, db, sorted(by_day))
    sent = [a for a in all_alerts if a["status"] == "sent"]
    per_rule = ", ".join(
        f"{r.id} {sum(a['rule'] == r.id for a in all_alerts)}" for r in spec.monitoring.rules
    )
    say(
        f"Alerts: {len(all_alerts)} breach(es) ({per_rule}), {len(sent)} emailed in "
        f"{len({a['message_id'] for a in sent})} email(s); retrains: {len(retrains)}, promoted: "
        f"{sum(r['decision'] == 'promoted' for r in retrains)}"
    )
    incidents = IncidentStore(db).all(spec.name)
    if incidents:
        say()
        say(
            "Incidents (a rule's breach episode: one email when it opens, a reminder while it "
            "lasts, one when it resolves)"
        )
        say(table([incident_row(i) for i in incidents]))
        say()
    outbox = settings.home / "outbox"
    if outbox.is_dir():
        say(f"Outbox         {outbox} ({len(list(outbox.glob('*.eml')))} .eml file(s))")
    say(f"Reports        {settings.home / 'reports' / spec.name}")
    say(f"Chart          {settings.home / 'reports' / spec.name / 'monitoring_history.png'}")
    tracking = R.model_registry(settings).describe()
    say(f"MLflow         {tracking} (champion: v{timeline[-1]['model_version']})")
    say(f"               mlflow ui --backend-store-uri {tracking}")
    say(f"Dagster        `make dev`, then http://localhost:3000 (runs kept in {os.environ['DAGSTER_HOME']})")
    say(
        f"               drift over time: asset {spec.name}/{C.MONITORING_HISTORY}, its chart in the metadata"
    )


def incident_row(inc: dict) -> dict:
    return {
        "#": inc["id"],
        "rule": inc["rule"],
        "opened": str(inc["opened_day"]),
        "last breach": str(inc["last_breach_day"]),
        "breach days": inc["breach_days"],
        "worst": f"{inc['worst_value']:.4f} on {inc['worst_day']}",
        "state": inc["status"] if inc["resolved_day"] is None else f"resolved {inc['resolved_day']}",
        "resolved by": inc["resolved_by"] or "",
        "emails": inc["emails_sent"],
    }


def print_where(spec: ModelSpec, db, alert_days: list) -> None:
    """Per alert day, the segments that explain most of its excess error (segment_metrics)."""
    if not alert_days:
        return
    say("Where the model is wrong on alert days (top segments by share of the excess error)")
    for day in alert_days:
        lines = top_segments_lines(db, spec.name, day, min_rows=spec.monitoring.segment_min_rows)
        say(f"  {day.date()}:" + ("" if lines else " no segment with excess error"))
        for line in lines:
            say(f"    {line}")
    say()
