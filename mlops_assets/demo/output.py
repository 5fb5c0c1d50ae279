"""What ``make demo`` prints: every line through ``say`` (labelled ``[synthetic]`` when the trips
are the generator's), fixed-width tables, a decision in one line."""

from __future__ import annotations

from collections.abc import Sequence

# Set to "[synthetic] " when the trips are the generator's: every line the demo prints says so.
LABEL = ""


def set_label(label: str) -> None:
    global LABEL
    LABEL = label


def say(message: str = "") -> None:
    lines = message.splitlines() or [""]
    print("\n".join(f"{LABEL}{line}" if line else LABEL.rstrip() for line in lines), flush=True)


def table(rows: Sequence[dict], columns: Sequence[str] | None = None) -> str:
    """A plain fixed-width table (no extra dependency)."""
    if not rows:
        return "(none)"
    columns = list(columns or rows[0].keys())
    cells = [[("" if r.get(c) is None else str(r.get(c))) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    line = "  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True))
    rule = "  ".join("-" * w for w in widths)
    body = ["  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)) for row in cells]
    return "\n".join([line, rule, *body])


def outcome(md: dict) -> str:
    """A promotion decision from asset metadata, in one line."""
    if md["decision"] == "promoted":
        return f"promoted, in effect from {md['effective_from']}"
    return f"not promoted ({md['decision_reason']})"


def fired(alerts: list[dict]) -> str:
    """Which rules fired on a day, and whether their email went out: ``drift,rmse_ratio (sent)``."""
    if not alerts:
        return ""
    status = "sent" if all(a["status"] == "sent" for a in alerts) else "pending"
    return f"{','.join(a['rule'] for a in alerts)} ({status})"
