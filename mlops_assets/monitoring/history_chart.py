"""The monitoring history chart: drift and model error per monitored day, as one matplotlib
figure (Agg backend, no display), from what the metrics DB holds (``History``). See
``history.py`` for the asset that draws it and what the figure shows."""

import dataclasses
import io
from dataclasses import dataclass
from datetime import date, timedelta

import matplotlib

matplotlib.use("Agg")  # before pyplot: no display here, and no GUI backend in a run's process

import matplotlib.pyplot as plt

from mlops_assets.alerting.store import AlertStore, IncidentStore
from mlops_assets.lib.days import gaps
from mlops_assets.lib.storage.engine import MetricsDB
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
    incidents: list[dict] = dataclasses.field(default_factory=list)

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
        IncidentStore(db).all(spec.name),
    )


def cut(history: History, first: date, last: date, margin: int = 7) -> History:
    """The days ``first`` .. ``last`` (and ``margin`` days either side) of ``history``: an
    incident's chart."""
    low, high = first - timedelta(days=margin), last + timedelta(days=margin)
    return dataclasses.replace(
        history,
        rows=[r for r in history.rows if low <= r.timestamp.date() <= high],
        alerts=[a for a in history.alerts if low <= a["timestamp"].date() <= high],
        timeline=[t for t in history.timeline if low <= t["effective_from"] <= high],
        incidents=[
            i for i in history.incidents if i["opened_day"] <= high and (i["resolved_day"] or high) >= low
        ],
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


def _plot_shadow(ax, history: History) -> None:
    """After a promotion, the previous champion's error on the same trips, on the champion's
    scale (its RMSE over the champion's holdout RMSE): the line the rollback is judged by."""
    points = [
        (i, row.shadow_rmse / row.holdout_rmse)
        for i, row in enumerate(history.rows)
        if row.shadow_rmse is not None and row.holdout_rmse
    ]
    if not points:
        return
    versions = sorted({row.shadow_version for row in history.rows if row.shadow_version}, key=_version_order)
    runs = [[points[0]]]
    for point in points[1:]:
        if point[0] == runs[-1][-1][0] + 1:
            runs[-1].append(point)
        else:
            runs.append([point])
    for n, run in enumerate(runs):
        ax.plot(
            [i for i, _ in run],
            [v for _, v in run],
            "--",
            color="#7f7f7f",
            linewidth=1.2,
            label=f"previous champion in shadow ({', '.join('v' + v for v in versions)})" if n == 0 else None,
        )


def _shade_incidents(ax, history: History, axes) -> None:
    """Each incident's span (opened .. resolved, or the last monitored day while open), hatched
    in the panel of its metric."""
    days = history.days
    panel = {PREDICTION_DRIFT: axes[0], RMSE_RATIO: axes[-1] if len(axes) > 1 else None}
    drawn = False
    for inc in history.incidents:
        if panel.get(inc["metric"], axes[0]) is not ax:
            continue
        first = position(days, inc["opened_day"])
        last = position(days, inc["resolved_day"] or days[-1])
        state = "resolved" if inc["resolved_day"] else "open"
        ax.axvspan(
            first - 0.5,
            last + 0.5,
            facecolor="none",
            edgecolor=ALERT_COLOUR,
            hatch="//",
            alpha=0.35,
            linewidth=0,
            zorder=0.5,
            label=None if drawn else "incident (opened .. resolved)",
        )
        ax.text(
            first - 0.5,
            0.02,
            f" #{inc['id']} {state}",
            transform=ax.get_xaxis_transform(),
            fontsize=7,
            color=ALERT_COLOUR,
            va="bottom",
        )
        drawn = True


def _version_order(version: str):
    return (0, int(version)) if version.isdigit() else (1, version)


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
        _plot_shadow(axes[1], history)
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
        _shade_incidents(ax, history, axes)
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
            rolled_back = t.get("kind") == "rolled_back"
            ax.axvline(x, color=ALERT_COLOUR if rolled_back else "black", linewidth=1.4)
            if ax is axes[0]:
                what = f"v{t['previous_version']} rolled back to" if rolled_back else "promoted,"
                ax.text(
                    x,
                    0.97,
                    f" v{t['model_version']} {what} in effect from {t['effective_from']}"
                    if not rolled_back
                    else f" {what} v{t['model_version']} from {t['effective_from']}",
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
