"""``<spec>/monitoring_history``: drift and model error over every monitored day, as a picture.

The asset page's own partition plot covers the latest 120 partition keys (up to today), so
monitored data from another year is not on it; this unpartitioned asset draws what the
metrics DB holds instead: ``dummy_metrics`` (one row per day), the model timeline
(promotions) and the ``alerts`` table. One matplotlib figure (Agg backend, no display):

1. ``prediction_drift`` per day, the drift rule's threshold and its breach side shaded (above
   for a distance, below for a p-value), alert days marked;
2. ``rmse_ratio`` per day with the quality rules' thresholds on it, alert days marked, and
   for the shadow days after a promotion the previous champion's error on the same trips on
   the same scale (dashed): the line a rollback is judged by;

the model version in effect as background bands, each promotion as a vertical line with its
label ("v2 promoted, in effect from 2022-02-01"), a rollback as a red one. The drawing is
``history_chart.py``. The x axis is the monitored days only:
a gap between monitored periods (2021-03 → 2022-01) is a dashed separator with the dates
it skips, and no line crosses it.

The figure is embedded in the materialization's metadata as Markdown with a PNG data URI
(what Dagster's own tutorial does), beside a short Markdown summary, and saved under
``MLOPS_HOME/reports/<spec>/monitoring_history.png``. An automation condition materializes it
after monitoring or a retrain updated its dependencies; ``make demo`` materializes it last.
"""

import base64
import statistics

import dagster as dg

from mlops_assets.keys import champion_review_key, dummy_metrics_key, history_key, model_key, retrained_key
from mlops_assets.lib.days import gaps
from mlops_assets.lib.storage.engine import MetricsDB
from mlops_assets.monitoring.history_chart import History, draw, promotions, read_history
from mlops_assets.monitoring.reports import ReportStore
from mlops_core.specs import ModelSpec


# --- the summary --------------------------------------------------------------------------------
def fmt(value: float | None, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def summary_markdown(history: History) -> str:
    """Days, range, thresholds, per model version the days and drift median/max, promotions,
    alerts: a few lines of Markdown under the chart."""
    spec, rows = history.spec, history.rows
    if not rows:
        return f"**{spec.name}**: no monitored days yet (the metrics DB has no `dummy_metrics` rows for it)."
    days = history.days
    rules = (
        "; ".join(r.describe() for r in spec.monitoring.rules)
        or spec.monitoring.drift_check_rule().describe()
    )
    lines = [
        f"**{spec.name}**: {len(days)} monitored days, {days[0]} .. {days[-1]}"
        + (f" ({len(gaps(days))} gap(s) not monitored)" if gaps(days) else ""),
        "",
        f"Alert rules: {rules}. Drift method: `{spec.drift_method}`.",
        "",
        "| model | days | first .. last | drift median | drift max | RMSE ratio median | RMSE ratio max |",
        "|---|---|---|---|---|---|---|",
    ]
    by_version: dict[str, list[dict]] = {}
    for row in rows:
        by_version.setdefault(str(row.model_version), []).append(row)
    for version, group in by_version.items():
        drift = [r.prediction_drift for r in group if r.prediction_drift is not None]
        ratio = [r.rmse_ratio for r in group if r.rmse_ratio is not None]
        first, last = group[0].timestamp.date(), group[-1].timestamp.date()
        cells = [
            f"v{version}",
            str(len(group)),
            f"{first} .. {last}",
            fmt(statistics.median(drift) if drift else None),
            fmt(max(drift) if drift else None),
            fmt(statistics.median(ratio) if ratio else None, 2),
            fmt(max(ratio) if ratio else None, 2),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    for t in history.timeline:
        what = "promoted" if t.get("previous_version") else "in effect"
        lines.append(f"- v{t['model_version']} {what}, from {t['effective_from']}: {t['reason']}")
    per_rule: dict[str, int] = {}
    for a in history.alerts:
        per_rule[a["rule"]] = per_rule.get(a["rule"], 0) + 1
    lines.append(
        f"- alerts: {len(history.alerts)}"
        + (" (" + ", ".join(f"{rule} {n}" for rule, n in per_rule.items()) + ")" if per_rule else "")
    )
    return "\n".join(lines)


def history_metadata(history: History, png: bytes, chart_file: dg.MetadataValue) -> dict:
    days = history.days
    encoded = base64.b64encode(png).decode("ascii")
    md = {
        "chart": dg.MetadataValue.md(
            f"![{history.spec.name}: drift and model error per day](data:image/png;base64,{encoded})"
        ),
        "summary": dg.MetadataValue.md(summary_markdown(history)),
        "days_monitored": dg.MetadataValue.int(len(days)),
        "alerts": dg.MetadataValue.int(len(history.alerts)),
        "promotions": dg.MetadataValue.int(len(promotions(history.timeline))),
        "drift_threshold": dg.MetadataValue.float(history.spec.monitoring.drift_check_rule().threshold),
        "chart_file": chart_file,
    }
    if days:
        md["first_day"] = dg.MetadataValue.text(str(days[0]))
        md["last_day"] = dg.MetadataValue.text(str(days[-1]))
    return md


def build_history_asset(spec: ModelSpec) -> dg.AssetsDefinition:
    @dg.asset(
        key=history_key(spec),
        deps=[dummy_metrics_key(spec), model_key(spec), retrained_key(spec), champion_review_key(spec)],
        group_name=spec.name,
        kinds={"matplotlib"},
        tags={"stage": "monitoring"},
        owners=list(spec.owners),
        # After a monitoring backfill or a retrain updated a dependency, once none is in
        # progress. Not eager(): that waits while any dependency is missing, and the daily
        # dependencies always miss most of their partitions.
        automation_condition=dg.AutomationCondition.eager()
        .without(~dg.AutomationCondition.any_deps_missing())
        .with_label("after monitoring or a retrain"),
        description=(
            "Drift and model error over every monitored day, as a chart in this asset's metadata: "
            "prediction_drift with the drift threshold, rmse_ratio with the quality rules' "
            "thresholds, the model version in effect, promotions and alert days, read from the "
            "metrics DB (dummy_metrics, model_timeline, alerts). The PNG is also saved under "
            f"MLOPS_HOME/reports/{spec.name}/. Materialized after monitoring or a retrain."
        ),
    )
    def monitoring_history(context: dg.AssetExecutionContext, metrics_db: MetricsDB, reports: ReportStore):
        history = read_history(spec, metrics_db)
        png = draw(history)
        path = reports.save_bytes(png, spec.name, "monitoring_history.png")
        context.log.info(
            "monitoring history: %d day(s), %d alert(s), %d promotion(s); chart %s (%d KB)",
            len(history.rows),
            len(history.alerts),
            len(promotions(history.timeline)),
            path,
            len(png) // 1024,
        )
        return dg.MaterializeResult(metadata=history_metadata(history, png, reports.link(path)))

    return monitoring_history
