"""What an alert says: the original design's line format, one email per evaluation."""

from __future__ import annotations

from datetime import datetime


def breach_line(threshold: float, timestamp: datetime, value: float) -> str:
    """``Threshold breach (>0.20): 2022-02-19 20:30 — 0.2341`` (the original design's form)."""
    return f"Threshold breach (>{threshold:.2f}): {timestamp:%Y-%m-%d %H:%M} — {value:.4f}"


def subject(model_name: str, alerts: list[dict], threshold: float) -> str:
    worst = max(alerts, key=lambda a: a["prediction_drift"])
    count = len(alerts)
    return (
        f"[mlops_assets] {model_name}: prediction drift {worst['prediction_drift']:.4f} "
        f"> {threshold:.2f} ({count} breach{'es' if count != 1 else ''})"
    )


def body(model_name: str, alerts: list[dict], threshold: float, links: dict[str, str]) -> str:
    lines = [
        f"Model: {model_name}",
        f"Prediction drift above the threshold of {threshold:.2f} "
        f"(Evidently ValueDrift on the model's predictions vs its reference data):",
        "",
        *(breach_line(threshold, a["timestamp"], a["prediction_drift"]) for a in alerts),
        "",
    ]
    versions = sorted({str(a.get("model_version")) for a in alerts if a.get("model_version")})
    if versions:
        lines.append(f"Model version(s) in effect on those days: {', '.join(versions)}")
    for label, value in links.items():
        lines.append(f"{label}: {value}")
    return "\n".join(lines) + "\n"
