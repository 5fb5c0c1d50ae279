"""When to retrain: the decision the alert sensor takes after recording a tick's breaches.
Pure: the sensor reads the alerts, the model timeline and the runs in flight, and turns a
``Retrain`` into a run request.

Today's rule: retrain for the latest breach day of a rule marked ``retrain``, unless the
model in effect was trained on data up to that day already, or a retrain of this model is
in flight (that day waits for it). The run key names the model and the day, so a request is
made once, whatever the number of ticks.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from mlops_assets.training import timeline as T


@dataclass(frozen=True)
class Retrain:
    """A retrain to request: for ``day`` (the window ends there), because of ``breach``."""

    day: date
    breach: dict  # the alerts row that triggered it
    note: str

    @property
    def run_key(self) -> str:
        return f"retrain:{self.breach['model_name']}:{self.day}"


@dataclass(frozen=True)
class NoRetrain:
    note: str  # why not ("" when there is no breach to react to)


def decide(
    latest_breach: dict | None, timeline: list[dict], in_flight: bool, label: str = ""
) -> Retrain | NoRetrain:
    """``latest_breach``: the latest alert of a rule marked ``retrain`` (None: none yet);
    ``in_flight``: a retrain of this model is queued or running; ``label``: the rule, for notes."""
    if latest_breach is None:
        return NoRetrain("")
    day = latest_breach["timestamp"].date()
    covered = T.trained_until(timeline)
    if covered is not None and day <= covered:
        return NoRetrain(f"latest breach {day} is covered by the champion (trained up to {covered})")
    if in_flight:
        return NoRetrain(
            f"a retrain of {latest_breach['model_name']} is already in flight; {day} waits for it"
        )
    return Retrain(
        day, latest_breach, f"requested a retrain for {day} ({label}: {latest_breach['value']:.4f})"
    )
