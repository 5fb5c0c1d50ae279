"""What an incident email says: the state first, then per incident what a person needs to act.

One email per sensor evaluation lists every incident that changed in it. The subject starts
with the most urgent state (``[FIRING]``, then ``[REMINDER]``, then ``[RESOLVED]``) and names
the model and each incident's rule. Per incident: its span, breach days and worst value; the
breach days not yet emailed, each in the original design's line form
(``Threshold breach (>0.20): 2022-01-05 00:00 — 0.3870``) followed by the day's other figures,
the drifted feature columns, the model version and links; the state of the retrain. The HTML
alternative repeats the text and shows the incident's chart (``incident_chart``).
"""

from __future__ import annotations

import html
from datetime import date

from mlops_assets.alerting.messages import breach_line
from mlops_assets.alerting.store import FIRING, REMINDER, RESOLVED
from mlops_assets.keys import drift_key
from mlops_assets.lib.links import Links
from mlops_core.daily_metrics import PREDICTION_DRIFT, DailyMetrics, describe
from mlops_core.specs import ModelSpec, threshold_text

ORDER = (FIRING, REMINDER, RESOLVED)


def rule_name(inc: dict) -> str:
    condition = f"{inc['metric']} {inc['op']} {threshold_text(inc['threshold'])}"
    return condition if inc["rule"] == inc["metric"] else f"{inc['rule']}: {condition}"


def subject(model_name: str, items: list[tuple[dict, str]]) -> str:
    """``[FIRING] green_taxi_duration: prediction_drift > 0.20 opened 2022-01-01 (worst 0.3870)``;
    several incidents: each with its state. One line (the mailer never folds it)."""
    top = min((state for _, state in items), key=ORDER.index)
    parts = []
    for inc, state in sorted(items, key=lambda item: ORDER.index(item[1])):
        tag = f"{state.upper()} " if len({s for _, s in items}) > 1 else ""
        if state == RESOLVED:
            what = f"resolved {inc['resolved_day']} after {duration(inc)} day(s)"
        elif state == REMINDER:
            what = f"open since {inc['opened_day']}, {inc['breach_days']} breach day(s)"
        else:
            what = f"opened {inc['opened_day']}"
        parts.append(f"{tag}{rule_name(inc)} {what} (worst {inc['worst_value']:.4f})")
    return f"[{top.upper()}] {model_name}: {'; '.join(parts)}"


def duration(inc: dict) -> int:
    end = inc["resolved_day"] or inc["last_breach_day"]
    return (end - inc["opened_day"]).days + 1


def figures(row: DailyMetrics | None) -> str:
    """The day's other figures: ``2,130 trips, v1; prediction_drift 0.2658, rmse_ratio 1.59,
    mean_error +1.23 min``."""
    if row is None:
        return "not monitored"
    parts = [f"{row.n_rows:,} trips", f"model v{row.model_version}" if row.model_version else "no model"]
    values = []
    if row.prediction_drift is not None:
        values.append(f"prediction_drift {row.prediction_drift:.4f}")
    if row.rmse_ratio is not None:
        values.append(f"rmse_ratio {row.rmse_ratio:.2f}")
    if row.rmse is not None:
        values.append(f"rmse {row.rmse:.2f} min")
    if row.mean_error is not None:
        values.append(f"mean_error {row.mean_error:+.2f} min")
    return f"{', '.join(parts)}; {', '.join(values) or 'no figures'}"


def drifted(row: DailyMetrics | None) -> str:
    if row is None or row.drifted_columns is None:
        return "drifted columns: not computed"
    names = [name.strip() for name in row.drifted_columns.split(",") if name.strip()]
    return f"drifted columns: {', '.join(names) or 'none'}"


def day_links(spec: ModelSpec, day: date, version: str | None, links: Links) -> list[str]:
    out = [f"Dagster: {links.asset_partition(drift_key(spec), day.isoformat())}"]
    report = links.report(spec.name, day.isoformat())
    if report:
        out.append(f"report: {report}")
    mlflow = links.mlflow_version(spec.name, version) if version else None
    if mlflow:
        out.append(f"MLflow: {mlflow}")
    return out


def status_line(inc: dict, state: str) -> str:
    span = f"{inc['opened_day']} .. {inc['resolved_day'] or inc['last_breach_day']}"
    worst = f"worst {inc['worst_value']:.4f} on {inc['worst_day']}"
    if state == RESOLVED:
        never = " (opened and resolved since the last email)" if inc["notified"] is None else ""
        return (
            f"Incident #{inc['id']}, {span}: resolved on {inc['resolved_day']} after {duration(inc)} "
            f"day(s), {inc['breach_days']} breach day(s), {worst}{never}."
            f"\n  Resolved by: {inc['resolved_by']}"
        )
    return (
        f"Incident #{inc['id']}, open since {inc['opened_day']}: {inc['breach_days']} breach day(s) "
        f"through {inc['last_breach_day']}, day {duration(inc)} of it, {worst}."
    )


def retrain_lines(inc: dict, decisions: list[dict], note: str | None, retrains: bool) -> list[str]:
    """The retrains of the incident's days (``model_decisions``) and, while it is open, what
    the retraining policy says now."""
    if not retrains:
        return ["Retrain: this rule does not request one."]
    end = inc["resolved_day"] or date.max
    mine = [d for d in decisions if d.get("episode_start") and inc["opened_day"] <= d["episode_start"] <= end]
    lines = []
    for d in mine:
        version = f"v{d['version']} " if d.get("version") else ""
        since = f", in effect from {d['effective_from']}" if d.get("effective_from") else ""
        lines.append(
            f"Retrain {d['day']} (attempt {d.get('attempt') or 1}): "
            f"{version}{d['kind']}{since}: {d['reason']}"
        )
    if inc["status"] != RESOLVED and note:
        lines.append(f"Retrain now: {note}")
    return lines or ["Retrain: none yet."]


def section(
    spec: ModelSpec,
    inc: dict,
    state: str,
    *,
    new_alerts: list[dict],
    rows: dict[date, DailyMetrics],
    decisions: list[dict],
    note: str | None,
    links: Links,
    where: dict[date, list[str]] | None = None,
) -> list[str]:
    rule = next((r for r in spec.monitoring.rules if r.id == inc["rule"]), None)
    header = rule.describe() if rule is not None else rule_name(inc)
    lines = [f"[{state.upper()}] {header}: {describe(inc['metric'])}", f"  {status_line(inc, state)}"]
    if new_alerts:
        lines.append("  Breach days not emailed before:")
    for alert in new_alerts:
        day = alert["timestamp"].date()
        row = rows.get(day)
        # The original design's line, unindented: what mail filters and people grep for.
        lines.append(
            breach_line(alert["threshold"], alert["timestamp"], alert["value"], alert["metric"], alert["op"])
        )
        lines.append(f"    {figures(row)}")
        if alert["metric"] == PREDICTION_DRIFT or (row is not None and row.drifted_columns):
            lines.append(f"    {drifted(row)}")
        if where and where.get(day):  # the segments that explain the day's excess error
            lines += ["    Where:", *(f"      {line}" for line in where[day])]
        lines += [f"    {link}" for link in day_links(spec, day, alert.get("model_version"), links)]
    retrains = bool(rule.retrain) if rule is not None else False
    lines += [f"  {line}" for line in retrain_lines(inc, decisions, note, retrains)]
    return lines


def body(spec: ModelSpec, sections: list[list[str]], links: Links) -> str:
    lines = [f"Model: {spec.name}", ""]
    for part in sections:
        lines += [*part, ""]
    lines.append(f"Dagster: {links.asset_partitions(drift_key(spec))}")
    if links.grafana_url:
        lines.append(f"Grafana: {links.grafana_url}")
    return "\n".join(lines) + "\n"


def html_body(text: str, images: dict[str, str]) -> str:
    """The plain text as HTML (links clickable), each image (cid -> caption) under it."""
    escaped = []
    for line in html.escape(text).splitlines():
        words = [
            f'<a href="{w}">{w}</a>' if w.startswith(("http://", "https://")) else w for w in line.split(" ")
        ]
        escaped.append(" ".join(words))
    figures_html = "".join(
        f'<figure><img src="cid:{cid}" alt="{html.escape(caption)}" style="max-width:100%">'
        f"<figcaption>{html.escape(caption)}</figcaption></figure>"
        for cid, caption in images.items()
    )
    return (
        '<!DOCTYPE html><html><body><pre style="font-family:monospace;white-space:pre-wrap">'
        + "\n".join(escaped)
        + "</pre>"
        + figures_html
        + "</body></html>"
    )
