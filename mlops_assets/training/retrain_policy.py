"""When to retrain: the decision the alert sensor takes on each tick, once per breach episode.

A retrain reacts to an *episode*: consecutive breaches of the spec's rules marked ``retrain``
(``lib/days.episodes``: it stays open until ``alerting.resolve_after_days`` monitored days pass
without a breach). Its first breach day is when the change became visible, so it is where the
data worth learning from begins. Day by day (production's cadence), the policy:

1. **waits for data after the change**: the retrain's window ends on the latest monitored day
   ``D`` and is requested only once ``D`` is ``retraining.days_after_change`` days after the
   episode's first day: its holdout (the last ``holdout_days``) and at least
   ``days_after_change − holdout_days`` training days lie after the change. A window of
   ``window_days`` ending at ``D`` (or, with ``retraining.window_from_change``, starting at
   the change) is what it trains on;
2. **does not request what it can tell will be refused**: the window's monitored days must
   hold ``min_rows`` scored trips, some before and some inside the holdout;
3. **retrains once per episode**: after a candidate that was not promoted (or a refusal), it
   tries again only after ``cooldown_days``, at most ``max_attempts`` times in all; after a
   promotion it stops (the new model resolves the episode or a new one opens);
4. never while a retrain of the model is in flight.

A rule with ``retrain: at_once`` asks for the original behaviour: a retrain for its latest
breach day as soon as it breaches (the trailing window, no waiting), still once per day.
The result is a ``Retrain`` (the run to request: its window, episode and attempt, and a run
key that makes the request idempotent) or a ``Wait`` saying why not, and until when.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

from mlops_assets.lib.days import Episode, episodes
from mlops_assets.training import timeline as T
from mlops_core.specs import ModelSpec


@dataclass(frozen=True)
class Retrain:
    """A retrain to request: the window ``window_start`` (None: the trailing ``window_days``)
    .. ``day``, reacting to ``breach`` in the episode from ``episode_start`` (None for an
    ``at_once`` rule), attempt ``attempt`` of that episode."""

    model_name: str
    day: date
    breach: dict  # the alerts row that triggered it (rule, value, day)
    note: str
    episode_start: date | None = None
    attempt: int | None = None
    window_start: date | None = None

    @property
    def run_key(self) -> str:
        if self.episode_start is None:
            return f"retrain:{self.model_name}:{self.day}"
        return f"retrain:{self.model_name}:{self.episode_start}:{self.attempt}"


@dataclass(frozen=True)
class Wait:
    """No retrain now: ``note`` says why, and ``until`` when one may come (None: not for this
    episode)."""

    note: str
    until: date | None = None


@dataclass(frozen=True)
class Situation:
    """What the sensor read for the decision."""

    breaches: list[dict]  # alerts of the spec's retrain rules (timestamp, rule, value, ...), by day
    scored: dict[date, int]  # monitored days -> trips the model scored (n_scored)
    timeline: list[dict]
    decisions: list[dict]  # model_decisions of the model
    in_flight: bool


def label_of(spec: ModelSpec, breach: dict) -> str:
    rule = next((r for r in spec.monitoring.rules if r.id == breach["rule"]), None)
    return rule.label() if rule else breach["rule"]


def latest_breach(spec: ModelSpec, breaches: list[dict]) -> dict:
    """The latest breach day's breach; of several rules breaching that day, the one the spec
    lists first (the original drift rule before the quality rule): what a request names."""
    order = {r.id: i for i, r in enumerate(spec.monitoring.rules)}
    last_day = max(b["timestamp"] for b in breaches)
    return min(
        (b for b in breaches if b["timestamp"] == last_day), key=lambda b: order.get(b["rule"], len(order))
    )


def decide(spec: ModelSpec, now: Situation) -> Retrain | Wait:
    if not now.breaches or not now.scored:
        return Wait("")
    at_once = {r.id for r in spec.monitoring.rules if r.retrain == "at_once"}
    latest = latest_breach(spec, now.breaches)
    if latest["rule"] in at_once:
        return _at_once(spec, now, latest)
    waiting = [b for b in now.breaches if b["rule"] not in at_once]
    if not waiting:
        return Wait("")
    found = episodes([b["timestamp"].date() for b in waiting], now.scored, spec.alerting.resolve_after_days)
    return _for_episode(
        spec, now, found[-1], [b for b in waiting if b["timestamp"].date() >= found[-1].start]
    )


def _at_once(spec: ModelSpec, now: Situation, breach: dict) -> Retrain | Wait:
    """The original behaviour: the trailing window of the breach day, as soon as it breaches."""
    day = breach["timestamp"].date()
    covered = T.trained_until(now.timeline)
    if covered is not None and day <= covered:
        return Wait(f"latest breach {day} is covered by the champion (trained up to {covered})")
    if now.in_flight:
        return Wait(f"a retrain of {spec.name} is in flight; {day} waits for it")
    label = label_of(spec, breach)
    return Retrain(
        spec.name, day, breach, f"requested a retrain for {day} ({label}: {breach['value']:.4f}, at once)"
    )


def _for_episode(spec: ModelSpec, now: Situation, episode: Episode, breaches: list[dict]) -> Retrain | Wait:
    policy = spec.retraining
    what = f"episode since {episode.start}"
    tried = [d for d in now.decisions if d["episode_start"] == episode.start]
    today = max(now.scored)
    promoted = [d for d in tried if d["kind"] == "promoted"]
    if promoted:
        return _refresh(spec, now, episode, tried, promoted[-1], today, breaches)
    if not episode.is_open:
        return Wait(f"{what} resolved on {episode.resolved} without a retrain")
    ready = episode.start + timedelta(days=policy.days_after_change - 1)
    covered = T.trained_until(now.timeline)
    if covered is not None and covered >= ready:
        return Wait(f"{what}: the champion was trained on data up to {covered}, after the change")
    if today < ready:
        return Wait(
            f"{what}: waiting for data after the change, a retrain on {ready} at the earliest "
            f"(retraining.days_after_change={policy.days_after_change}; monitored up to {today})",
            ready,
        )
    if len(tried) >= policy.max_attempts:
        return Wait(
            f"{what}: {len(tried)} retrain(s) tried, none promoted (retraining.max_attempts); no more"
        )
    if tried:
        again = tried[-1]["day"] + timedelta(days=policy.cooldown_days)
        if today < again:
            return Wait(
                f"{what}: the last retrain ({tried[-1]['day']}: {tried[-1]['kind']}) cools down "
                f"until {again}",
                again,
            )
    if now.in_flight:
        return Wait(f"{what}: a retrain of {spec.name} is in flight")
    window_start = episode.start if policy.window_from_change else None
    first = max(window_start or date.min, today - timedelta(days=policy.window_days - 1))
    refusal = foreseen_refusal(spec, now.scored, first, today)
    if refusal:
        return Wait(f"{what}: {refusal}; waiting for more data")
    breach = latest_breach(spec, breaches)
    attempt = len(tried) + 1
    note = (
        f"{what}: requested retrain attempt {attempt} on {first} .. {today} "
        f"({label_of(spec, breach)}: {breach['value']:.4f} on {breach['timestamp'].date()})"
    )
    return Retrain(spec.name, today, breach, note, episode.start, attempt, window_start)


def _refresh(spec, now, episode, tried, promoted, today, breaches) -> Retrain | Wait:
    """After the episode's promotion: one more retrain on a window entirely after the change,
    when the promoted model's was not (it learnt from fewer days than a full window), once the
    monitored days allow it and attempts remain (and monitoring is not more than
    ``cooldown_days`` past that day); promoted only on a real win like any other."""
    policy = spec.retraining
    what = f"episode since {episode.start}"
    done = f"{what}: v{promoted['version']} was promoted from {promoted['effective_from']}"
    full = episode.start + timedelta(days=policy.window_days - 1)
    if promoted["day"] >= full or len(tried) >= policy.max_attempts or tried[-1] is not promoted:
        return Wait(f"{done}; no more retrains")
    if today < full:
        return Wait(f"{done}; a refresh on a window entirely after the change on {full}", full)
    if today > full + timedelta(days=policy.cooldown_days):
        # Monitoring jumped past the refresh's moment (a month per run, a gap): a window ending
        # today would no longer be about this episode, and one ending on ``full`` would change
        # the model of days already monitored.
        return Wait(
            f"{done}; its refresh was due on {full}, monitoring is past it ({today}); no more retrains"
        )
    if now.in_flight:
        return Wait(f"{done}; its refresh waits for a retrain in flight")
    first = max(episode.start, today - timedelta(days=policy.window_days - 1))
    refusal = foreseen_refusal(spec, now.scored, first, today)
    if refusal:
        return Wait(f"{done}; the refresh waits: {refusal}")
    breach = latest_breach(spec, breaches)
    note = f"{done}; requested its refresh (attempt {len(tried) + 1}) on {first} .. {today}, after the change"
    return Retrain(spec.name, today, breach, note, episode.start, len(tried) + 1, episode.start)


def foreseen_refusal(spec: ModelSpec, scored: dict[date, int], first: date, last: date) -> str | None:
    """Why the retrain asset would refuse the window first .. last, judged from the trips
    monitoring scored on its days (None: it would train)."""
    holdout_start = last - timedelta(days=spec.retraining.holdout_days - 1)
    days = {d: n for d, n in scored.items() if first <= d <= last}
    total = sum(days.values())
    if total < spec.retraining.min_rows:
        return (
            f"the window {first} .. {last} holds {total:,} scored trips, fewer than "
            f"retraining.min_rows={spec.retraining.min_rows:,}"
        )
    if not any(n for d, n in days.items() if d < holdout_start):
        return f"the window {first} .. {last} has no monitored trips before its holdout ({holdout_start} on)"
    if not any(n for d, n in days.items() if d >= holdout_start):
        return f"the window {first} .. {last} has no monitored trips in its holdout ({holdout_start} on)"
    return None
