"""Where the model is wrong, said where people look: a day's segment figures
(``mlops_core.segments``) as the rows of table ``segment_metrics``, a Markdown table of the
worst segments for the partition's metadata, an HTML section for the day's Evidently report,
and the lines an alert email names the top segments with (``top_segments_lines``).

"Worst" is by ``excess_share`` (the segment's share of the squared error above what the
holdout's per-segment RMSE predicts); for a model trained before per-segment holdout figures
were stored (no ``excess_share``), by ``error_share``. A segment with fewer scored trips than
the spec's ``monitoring.segment_min_rows`` is recorded but never named.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime, timedelta
from html import escape

from mlops_assets.lib.storage.engine import MetricsDB, day_timestamp
from mlops_assets.monitoring.store import SegmentMetricsStore
from mlops_core.segments import SegmentFigures, describe_segment
from mlops_core.specs import DEFAULT_SEGMENT_MIN_ROWS


def segment_rows(figures: Sequence[SegmentFigures], version: str | None) -> list[dict]:
    """The day's rows of ``segment_metrics`` (without model, day and ``computed_at``)."""
    return [{**f.as_dict(), "model_version": version} for f in figures]


def ranking_key(rows: Sequence[dict]) -> str:
    """``excess_share`` when the day has it (the model stores per-segment holdout figures),
    else ``error_share``."""
    return "excess_share" if any(r.get("excess_share") is not None for r in rows) else "error_share"


def worst(
    rows: Sequence[dict], limit: int | None = 3, min_rows: int = DEFAULT_SEGMENT_MIN_ROWS
) -> list[dict]:
    """The segments that explain most of the day's (excess) error, largest share first; only
    segments with at least ``min_rows`` scored trips and a share above 0."""
    key = ranking_key(rows)
    named = [r for r in rows if (r.get("n_scored") or 0) >= min_rows and (r.get(key) or 0.0) > 0.0]
    named.sort(key=lambda r: (-r[key], r["dimension"], r["segment"]))
    return named if limit is None else named[:limit]


def _minutes(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f}"


def segment_line(row: dict, key: str) -> str:
    """``drop-off borough Queens: 41 % of the excess error, RMSE 14.1 vs 9.2 on the holdout
    (1,234 trips, mean error -3.2 min)``."""
    what = "excess error" if key == "excess_share" else "squared error"
    holdout = (
        f" vs {_minutes(row['holdout_rmse'])} on the holdout" if row.get("holdout_rmse") is not None else ""
    )
    return (
        f"{describe_segment(row['dimension'], row['segment'])}: {row[key] * 100:.0f} % of the {what}, "
        f"RMSE {_minutes(row['rmse'])}{holdout} ({row['n_scored']:,} trips, mean error "
        f"{row['mean_error']:+.1f} min)"
    )


def top_segments_lines(
    db_or_rows: MetricsDB | Sequence[dict],
    model_name: str,
    day: date | datetime | str,
    limit: int = 3,
    min_rows: int = DEFAULT_SEGMENT_MIN_ROWS,
) -> list[str]:
    """The ``limit`` segments that explain most of the model's excess error on ``day``, one line
    each (empty when the day has no segment rows or no segment with excess error). Reads table
    ``segment_metrics`` from a ``MetricsDB``, or takes its rows as dicts."""
    start = day_timestamp(day.date() if isinstance(day, datetime) else day)
    if isinstance(db_or_rows, MetricsDB):
        rows = SegmentMetricsStore(db_or_rows).rows(model_name, start, start + timedelta(days=1))
    else:
        rows = [
            r
            for r in db_or_rows
            if r.get("model_name", model_name) == model_name and r.get("timestamp", start) == start
        ]
    key = ranking_key(rows)
    return [segment_line(r, key) for r in worst(rows, limit, min_rows)]


HEADER = (
    "dimension",
    "segment",
    "trips",
    "RMSE",
    "holdout RMSE",
    "mean error",
    "error share",
    "excess share",
)


def _cells(row: dict) -> list[str]:
    def share(value):
        # a no-break space: the UI's table wraps "43.3 %" at a plain one
        return "" if value is None else f"{value * 100:.1f}\u00a0%"

    return [
        row["dimension"],
        row["segment"],
        f"{row['n_rows']:,}",
        "" if row["rmse"] is None else f"{row['rmse']:.2f}",
        "" if row["holdout_rmse"] is None else f"{row['holdout_rmse']:.2f}",
        "" if row["mean_error"] is None else f"{row['mean_error']:+.2f}",
        share(row["error_share"]),
        share(row["excess_share"]),
    ]


def segments_markdown(rows: Sequence[dict], limit: int = 8, min_rows: int = DEFAULT_SEGMENT_MIN_ROWS) -> str:
    """The worst segments of a day as a Markdown table (the partition's metadata)."""
    top = worst(rows, limit, min_rows)
    if not top:
        return f"No segment with at least {min_rows} trips has excess error."
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    lines += ["| " + " | ".join(_cells(r)) + " |" for r in top]
    return "\n".join(lines)


def segments_html(rows: Sequence[dict], min_rows: int = DEFAULT_SEGMENT_MIN_ROWS) -> str:
    """Every segment of the day as an HTML section appended to its Evidently report."""
    head = "".join(f"<th>{escape(h)}</th>" for h in HEADER)
    body = "".join(
        "<tr" + (' style="color:#888"' if (r["n_scored"] or 0) < min_rows else "") + ">"
        + "".join(f"<td>{escape(c)}</td>" for c in _cells(r))
        + "</tr>"
        for r in rows
    )  # fmt: skip
    return (
        '<section id="segments" style="font-family:sans-serif;margin:2em">'
        "<h2>Where the model is wrong: the day's error by segment</h2>"
        "<p>error share: the segment's share of the day's squared error; excess share: its share of "
        "the squared error above what the model's RMSE on the same segment of its holdout predicts. "
        f"Grey: fewer than {min_rows} scored trips (never named in alerts).</p>"
        f'<table border="1" cellpadding="4" style="border-collapse:collapse"><tr>{head}</tr>{body}</table>'
        "</section>"
    )
