"""``<spec>/monitoring_history``: drift and model error over every monitored day, as a picture.

The asset page's own partition plot covers the latest 120 partition keys (up to today), so
monitored data from another year is not on it; this unpartitioned asset draws what the
metrics DB holds instead: ``dummy_metrics`` (one row per day), the model timeline
(promotions) and the ``alerts`` table. One matplotlib figure (Agg backend, no display):

1. ``prediction_drift`` per day, the drift rule's threshold and its breach side shaded (above
   for a distance, below for a p-value), alert days marked;
2. ``rmse_ratio`` per day with the quality rules' thresholds on it, alert days marked;

the model version in effect as background bands, each promotion as a vertical line with its
label ("v2 promoted, in effect from 2022-02-01"). The x axis is the monitored days only:
a gap between monitored periods (2021-03 → 2022-01) is a dashed separator with the dates
it skips, and no line crosses it.

The figure is embedded in the materialization's metadata as Markdown with a PNG data URI
(what Dagster's own tutorial does), beside a short Markdown summary, and saved under
``MLOPS_HOME/reports/<spec>/monitoring_history.png``. An automation condition materializes it
after monitoring or a retrain updated its dependencies; ``make demo`` materializes it last.
"""

import base64
import io
import statistics
from dataclasses import dataclass
from datetime import date

import dagster as dg
import matplotlib

matplotlib.use("Agg")  # before pyplot: no display here, and no GUI backend in a run's process

import matplotlib.pyplot as plt

from mlops_assets.alerting.store import AlertStore
from mlops_assets.keys import dummy_metrics_key, history_key, model_key, retrained_key
from mlops_assets.lib.days import gaps
from mlops_assets.lib.storage.engine import MetricsDB
from mlops_assets.monitoring.reports import ReportStore
from mlops_assets.monitoring.store import DailyMetricsStore
from mlops_assets.training.store import TimelineStore
from mlops_core.daily_metrics import PREDICTION_DRIFT, DailyMetrics
from mlops_core.specs import AlertRule, ModelSpec

RMSE_RATIO = "rmse_ratio"
BAND_COLOURS = ("#e8f0fb", "#fdf1e3", "#e9f6ec", "#f6e9f4")
ALERT_COLOUR = "#d62728"


@dataclass(frozen=True)
class History:
    """What the view shows, read from the metrics DB (rows ordered by day)."""

    spec: ModelSpec
    rows: list[DailyMetrics]
    timeline: list[dict]
    alerts: list[dict]

    @property
    def days(self) -> list[date]:
        return [r.timestamp.date() for r in self.rows]

    def values(self, column: str) -> list[float | None]:
        return [getattr(r, column) for r in self.rows]

    def alert_days(self, metric: str) -> set[date]:
        return {a["timestamp"].date() for a in self.alerts if a["metric"] == metric}


def read_history(spec: ModelSpec, db: MetricsDB) -> History:
    return History(
        spec,
        DailyMetricsStore(db).rows(spec.name),
        TimelineStore(db).entries(spec.name),
        AlertStore(db).all(spec.name),
    )


def segments(days: list[date], versions: list[str] | None = None) -> list[range]:
    """Index ranges of runs of consecutive days (and of one model version, when given): one
    line per run, none across a gap or a change of model."""
    cuts = {i for i, _, _ in gaps(days)}
    if versions:
        cuts |= {i for i in range(1, len(versions)) if versions[i] != versions[i - 1]}
    starts = [0, *sorted(cuts)]
    ends = [*starts[1:], len(days)]
    return [range(s, e) for s, e in zip(starts, ends, strict=True)] if days else []


def version_spans(rows: list[DailyMetrics]) -> list[tuple[str, int, int]]:
    """Runs of days monitored with one model version: (version, first index, last index)."""
    spans: list[tuple[str, int, int]] = []
    for i, row in enumerate(rows):
        version = str(row.model_version)
        if spans and spans[-1][0] == version:
            spans[-1] = (version, spans[-1][1], i)
        else:
            spans.append((version, i, i))
    return spans


def position(days: list[date], day: date) -> float:
    """Where ``day`` starts on the compressed axis: between the last monitored day before it
    and the first on or after it (past the end when it is after every monitored day)."""
    for i, d in enumerate(days):
        if d >= day:
            return i - 0.5
    return len(days) - 0.5


def promotions(timeline: list[dict]) -> list[dict]:
    """Timeline entries that replaced a model (the first model is in effect, not promoted)."""
    return timeline[1:]


def month_ticks(days: list[date], most: int = 14) -> tuple[list[int], list[str]]:
    """Ticks at the first monitored day of each month (and after each gap), thinned to
    ``most``."""
    marks = [
        i for i, d in enumerate(days) if i == 0 or (d.year, d.month) != (days[i - 1].year, days[i - 1].month)
    ]
    step = max(1, -(-len(marks) // most))
    marks = marks[::step]
    return marks, [days[i].strftime("%Y-%m-%d") for i in marks]


def _plot_metric(ax, history: History, column: str, rules: list[AlertRule], colour: str) -> None:
    days, values = history.days, history.values(column)
    for seg in segments(days, [str(v) for v in history.values("model_version")]):
        xs = [i for i in seg if values[i] is not None]
        ax.plot(xs, [values[i] for i in xs], "-o", color=colour, markersize=2.5, linewidth=1.2)
    alert_days = history.alert_days(column)
    hits = [i for i, d in enumerate(days) if d in alert_days and values[i] is not None]
    if hits:
        ax.plot(
            hits,
            [values[i] for i in hits],
            "v",
            color=ALERT_COLOUR,
            markersize=6,
            linestyle="none",
            label=f"alert sent ({len(hits)} day{'s' if len(hits) != 1 else ''})",
        )
    for rule in rules:
        ax.axhline(rule.threshold, color=ALERT_COLOUR, linestyle="--", linewidth=1)
        low, high = ax.get_ylim()
        if rule.op == ">":
            ax.axhspan(rule.threshold, max(high, rule.threshold * 1.05), color=ALERT_COLOUR, alpha=0.06)
        else:
            ax.axhspan(min(low, 0), rule.threshold, color=ALERT_COLOUR, alpha=0.06)
        ax.set_ylim(min(low, rule.threshold), max(high, rule.threshold * 1.05))
        ax.annotate(
            f"threshold {rule.condition()}" + (" (p-value: lower is drift)" if rule.op == "<" else ""),
            xy=(1, rule.threshold),
            xycoords=("axes fraction", "data"),
            xytext=(-4, 3),
            textcoords="offset points",
            ha="right",
            va="bottom",
            color=ALERT_COLOUR,
            fontsize=8,
        )


def draw(history: History) -> bytes:
    """The figure as PNG bytes (an empty-state figure when no day is monitored yet)."""
    spec, days = history.spec, history.days
    monitoring = spec.monitoring
    ratio_rules = [r for r in monitoring.quality_rules() if r.metric == RMSE_RATIO]
    has_quality = any(v is not None for v in history.values(RMSE_RATIO))
    panels = 2 if has_quality else 1
    fig, axes = plt.subplots(
        panels, 1, figsize=(12, 3.3 * panels + 0.6), sharex=True, squeeze=False, layout="constrained"
    )
    axes = [a[0] for a in axes]
    try:
        if not days:
            axes[0].text(
                0.5,
                0.5,
                f"{spec.name}: no monitored days yet\n(materialize {spec.name}/dummy_metrics for some days)",
                ha="center",
                va="center",
                transform=axes[0].transAxes,
                fontsize=13,
            )
            axes[0].set_axis_off()
        else:
            _draw_panels(history, axes, ratio_rules)
        out = io.BytesIO()
        fig.savefig(out, format="png", dpi=80)
        return out.getvalue()
    finally:
        plt.close(fig)


def _draw_panels(history: History, axes, ratio_rules: list[AlertRule]) -> None:
    spec, days = history.spec, history.days
    drift_rule = spec.monitoring.drift_check_rule()
    _plot_metric(axes[0], history, PREDICTION_DRIFT, [drift_rule], "#1f77b4")
    axes[0].set_ylabel(f"prediction drift\n({spec.drift_method})")
    axes[0].set_title(
        f"{spec.name}: {len(days)} monitored days, {days[0]} .. {days[-1]}", loc="left", fontsize=11, pad=16
    )
    if len(axes) > 1:
        _plot_metric(axes[1], history, RMSE_RATIO, ratio_rules, "#2c7d3a")
        axes[1].set_ylabel("RMSE ratio\n(day / holdout)")
    for ax in axes:
        for n, (version, first, last) in enumerate(version_spans(history.rows)):
            ax.axvspan(first - 0.5, last + 0.5, color=BAND_COLOURS[n % len(BAND_COLOURS)], zorder=0)
            if ax is axes[0]:
                ax.text(
                    (first + last) / 2,
                    1.0,
                    f"v{version}",
                    transform=ax.get_xaxis_transform(),
                    ha="center",
                    va="bottom",
                    fontsize=9,
                    fontweight="bold",
                )
        for i, first_skipped, last_skipped in gaps(days):
            ax.axvline(i - 0.5, color="grey", linestyle=":", linewidth=1.2)
            if ax is axes[-1]:
                ax.text(
                    i - 0.5,
                    0.02,
                    f" not monitored\n {first_skipped} .. {last_skipped}",
                    transform=ax.get_xaxis_transform(),
                    fontsize=7,
                    color="grey",
                    va="bottom",
                )
        for t in promotions(history.timeline):
            x = position(days, t["effective_from"])
            ax.axvline(x, color="black", linewidth=1.4)
            if ax is axes[0]:
                ax.text(
                    x,
                    0.97,
                    f" v{t['model_version']} promoted, in effect from {t['effective_from']}",
                    transform=ax.get_xaxis_transform(),
                    fontsize=8,
                    va="top",
                    bbox={"facecolor": "white", "alpha": 0.8, "linewidth": 0},
                )
        ax.grid(axis="y", alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(loc="upper left", fontsize=8, framealpha=0.8)
    ticks, labels = month_ticks(days)
    axes[-1].set_xticks(ticks, labels, rotation=30, ha="right", fontsize=8)
    axes[-1].set_xlim(-0.5, len(days) - 0.5)


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
        deps=[dummy_metrics_key(spec), model_key(spec), retrained_key(spec)],
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
