"""What an alert email says: the original design's line format, one email per evaluation.

One email lists every rule's new breaches. Drift lines keep the original form
(``Threshold breach (>0.20): 2022-02-19 00:00 — 0.2341``); other rules' lines name their metric
(``Threshold breach rmse_ratio (>1.20): 2022-02-19 00:00 — 1.3120``).
"""

from __future__ import annotations

from datetime import datetime

from mlops_assets.keys import drift_key
from mlops_assets.lib.links import Links
from mlops_core.daily_metrics import PREDICTION_DRIFT, describe
from mlops_core.specs import AlertRule, ModelSpec, threshold_text


def breach_line(
    threshold: float, timestamp: datetime, value: float, metric: str = PREDICTION_DRIFT, op: str = ">"
) -> str:
    """``Threshold breach (>0.20): 2022-02-19 20:30 — 0.2341`` (the original design's form) for
    prediction drift; ``Threshold breach rmse_ratio (>1.20): ...`` for other metrics."""
    label = "" if metric == PREDICTION_DRIFT else f" {metric}"
    return (
        f"Threshold breach{label} ({op}{threshold_text(threshold)}): {timestamp:%Y-%m-%d %H:%M} — {value:.4f}"
    )


def _line(alert: dict) -> str:
    return breach_line(alert["threshold"], alert["timestamp"], alert["value"], alert["metric"], alert["op"])


def worst(alerts: list[dict]) -> dict:
    """The alert furthest past its threshold in its rule's direction."""
    op = alerts[0]["op"]
    return max(alerts, key=lambda a: a["value"]) if op == ">" else min(alerts, key=lambda a: a["value"])


def by_rule(alerts: list[dict]) -> dict[str, list[dict]]:
    """Alerts grouped by rule, drift rules first, then in the order the rules first appear."""
    groups: dict[str, list[dict]] = {}
    for alert in sorted(alerts, key=lambda a: a["metric"] != PREDICTION_DRIFT):
        groups.setdefault(alert["rule"], []).append(alert)
    return groups


def subject(model_name: str, alerts: list[dict]) -> str:
    """One line (the mailer never folds it): the worst value of each rule, and the count."""
    parts = []
    for group in by_rule(alerts).values():
        w = worst(group)
        name = "prediction drift" if w["metric"] == PREDICTION_DRIFT else w["metric"]
        parts.append(f"{name} {w['value']:.4f} {w['op']} {threshold_text(w['threshold'])}")
    count = len(alerts)
    return f"[mlops_assets] {model_name}: {', '.join(parts)} ({count} breach{'es' if count != 1 else ''})"


def rule_label(alert: dict) -> str:
    """An alert's rule as ``rmse_ratio > 1.20`` (``name: metric > t`` for a named rule)."""
    condition = f"{alert['metric']} {alert['op']} {threshold_text(alert['threshold'])}"
    return condition if alert["rule"] == alert["metric"] else f"{alert['rule']}: {condition}"


def rule_text(alert: dict, rules: dict[str, AlertRule]) -> str:
    rule = rules.get(alert["rule"])
    described = rule.describe() if rule is not None else rule_label(alert)
    retrain = " (requests a retrain)" if alert.get("retrain") else ""
    if rule is not None and rule.retrain == "at_once":
        retrain = " (requests a retrain at once)"
    return f"  {described}{retrain}: {describe(alert['metric'])}"


def body(model_name: str, alerts: list[dict], rules: list[AlertRule], links: dict[str, str]) -> str:
    known = {r.id: r for r in rules}
    groups = by_rule(alerts)
    lines = [f"Model: {model_name}", "Rules breached (each rule and day is alerted once):"]
    lines += [rule_text(group[0], known) for group in groups.values()]
    lines.append("")
    for group in groups.values():
        lines += [_line(a) for a in group]
    lines.append("")
    versions = sorted(
        {str(a.get("model_version")) for a in alerts if a.get("model_version")}, key=_version_key
    )
    if versions:
        lines.append(f"Model version(s) in effect on those days: {', '.join(versions)}")
    for label, value in links.items():
        lines.append(f"{label}: {value}")
    return "\n".join(lines) + "\n"


def _version_key(version: str):
    return (0, int(version)) if version.isdigit() else (1, version)


def alert_links(spec: ModelSpec, links: Links) -> dict[str, str]:
    """Where an alert's reader looks next: the drift partitions in Dagster, Grafana."""
    out = {"Dagster": links.asset_partitions(drift_key(spec))}
    if links.grafana_url:
        out["Grafana"] = links.grafana_url
    return out


def decision_subject(model_name: str, decisions: list[dict]) -> str:
    """``[mlops_assets] green_taxi_duration: rolled back v4 to v3``: one line."""
    parts = [f"rolled back v{d['version']} to v{d['champion_version']}" for d in decisions]
    return f"[mlops_assets] {model_name}: {', '.join(parts)}"


def decision_body(model_name: str, decisions: list[dict], links: dict[str, str]) -> str:
    lines = [f"Model: {model_name}", ""]
    for d in decisions:
        lines += [
            f"Rolled back v{d['version']} to v{d['champion_version']} on {d['day']}, "
            f"in effect from {d['effective_from']}:",
            f"  {d['reason']}",
            f"  v{d['version']} − v{d['champion_version']}: {d['rmse_diff']:+.4f} min RMSE "
            f"[{d['rmse_diff_low']:+.4f}, {d['rmse_diff_high']:+.4f}] over {d['n_trips']:,} trips",
            "",
        ]
    lines += [f"{label}: {value}" for label, value in links.items()]
    return "\n".join(lines) + "\n"
