"""The local Dagster instance that ``make dev`` and ``make demo`` share: ``DAGSTER_HOME/dagster.yaml``.

``python -m mlops_assets.local_instance DAGSTER_HOME`` (the Makefile's ``dev`` target) and
``make demo`` write ``local_instance.yaml`` there when the file is missing, or when it is the
two-setting file earlier versions wrote (telemetry and nux off, nothing chosen by a person).
Any other file is left alone; if it sets no run queue, a note says what it is missing.
"""

from __future__ import annotations

import sys
from pathlib import Path

import yaml

TEMPLATE = Path(__file__).with_name("local_instance.yaml")
# What `make dev` and `make demo` wrote before the run queue was configured.
EARLIER_DEFAULT = "telemetry:\n  enabled: false\nnux:\n  enabled: false\n"
QUEUE_SECTIONS = ("run_coordinator", "run_queue", "concurrency")


def ensure(home: Path) -> str | None:
    """Make ``home/dagster.yaml`` the local instance config if it is missing or an earlier
    default; returns a note for a file of the user's own that configures no run queue."""
    home.mkdir(parents=True, exist_ok=True)
    config = home / "dagster.yaml"
    if not config.exists() or config.read_text() == EARLIER_DEFAULT:
        config.write_text(TEMPLATE.read_text())
        return None
    try:
        settings = yaml.safe_load(config.read_text()) or {}
    except yaml.YAMLError as exc:
        return f"note: {config} is not valid YAML ({exc}); Dagster will refuse it"
    if not isinstance(settings, dict) or not any(k in settings for k in QUEUE_SECTIONS):
        return (
            f"note: {config} sets no run queue: Dagster runs up to 10 runs at once, with no "
            f"limit of one retrain per model; copy the run_coordinator section of {TEMPLATE}"
        )
    return None


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m mlops_assets.local_instance DAGSTER_HOME", file=sys.stderr)
        return 2
    note = ensure(Path(argv[0]))
    if note:
        print(note, file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
