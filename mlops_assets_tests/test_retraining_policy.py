"""The retraining policy and the paired comparison as pure functions: when a breach episode asks
for a retrain (after the change, once, a refresh, the cool-down, the attempts), what a window it
can tell will be refused, breach episodes, and the paired statistics promotion and rollback
stand on (checked against numpy and scipy). No fakes: plain values in, decisions out; the same
functions run in the real sensor (test_loop_day_by_day.py)."""

from __future__ import annotations

import math
from datetime import date, datetime, timedelta

import numpy as np
import pytest
from scipy import stats

from mlops_assets.lib.days import Episode, episodes
from mlops_assets.training import retrain_policy as P
from mlops_assets.training import timeline as T
from mlops_assets.training.paired import Moments, compare
from mlops_assets_tests.helpers import default_spec

SPEC = default_spec()  # days_after_change 21, window 28, holdout 7, cooldown 7, 2 attempts


def d(day: int, month: int = 1) -> date:
    return date(2022, month, day)


def breach(day: date, rule: str = "prediction_drift", value: float = 0.3) -> dict:
    return {"timestamp": datetime(day.year, day.month, day.day), "rule": rule, "value": value}


def situation(breach_days, last_day: date, *, decisions=(), timeline=None, in_flight=False, scored=2000):
    first = min(breach_days)
    days = [first + timedelta(days=i) for i in range((last_day - first).days + 1)]
    return P.Situation(
        breaches=[breach(b) for b in sorted(breach_days)],
        scored=dict.fromkeys(days, scored),
        timeline=timeline or [{"model_version": "1", "effective_from": date(2021, 2, 1), "window_end": None}],
        decisions=list(decisions),
        in_flight=in_flight,
    )


def every_day(first: date, last: date) -> list[date]:
    return [first + timedelta(days=i) for i in range((last - first).days + 1)]


# --- episodes ----------------------------------------------------------------------------------
def test_an_episode_stays_open_until_enough_quiet_monitored_days():
    monitored = every_day(d(1), d(20))
    found = episodes([d(2), d(4), d(5), d(12)], monitored, resolve_after=3)
    assert found == [Episode(d(2), d(5), 3, resolved=d(8)), Episode(d(12), d(12), 1, resolved=d(15))]
    # An unmonitored gap neither continues nor ends it.
    gap = [day for day in monitored if not d(6) <= day <= d(10)]
    assert episodes([d(2), d(5), d(12)], gap, resolve_after=3) == [Episode(d(2), d(12), 3, resolved=d(15))]
    assert episodes([d(19)], monitored, resolve_after=3)[-1].is_open


# --- when to retrain ----------------------------------------------------------------------------
def test_no_retrain_before_days_after_change_then_one_on_the_window_ending_that_day():
    waiting = P.decide(SPEC, situation(every_day(d(1), d(20)), d(20)))
    assert isinstance(waiting, P.Wait) and waiting.until == d(21)
    assert "waiting for data after the change, a retrain on 2022-01-21 at the earliest" in waiting.note
    ready = P.decide(SPEC, situation(every_day(d(1), d(21)), d(21)))
    assert isinstance(ready, P.Retrain)
    assert (ready.day, ready.episode_start, ready.attempt, ready.window_start) == (d(21), d(1), 1, None)
    assert ready.run_key == "retrain:green_taxi_duration:2022-01-01:1"


def test_a_window_from_the_change_starts_at_the_episode():
    spec = SPEC.model_copy(
        update={"retraining": SPEC.retraining.model_copy(update={"window_from_change": True})}
    )
    ready = P.decide(spec, situation(every_day(d(1), d(21)), d(21)))
    assert ready.window_start == d(1)


def test_after_a_promotion_one_refresh_on_a_window_entirely_after_the_change():
    promoted = {
        "episode_start": d(1),
        "kind": "promoted",
        "day": d(21),
        "version": "2",
        "effective_from": d(22),
    }
    wait = P.decide(SPEC, situation(every_day(d(1), d(21)), d(27), decisions=[promoted]))
    assert isinstance(wait, P.Wait) and wait.until == d(28)
    assert "a refresh on a window entirely after the change on 2022-01-28" in wait.note
    refresh = P.decide(SPEC, situation(every_day(d(1), d(21)), d(28), decisions=[promoted]))
    assert isinstance(refresh, P.Retrain)
    assert (refresh.day, refresh.window_start, refresh.attempt) == (d(28), d(1), 2)
    done = {**promoted, "kind": "not_promoted", "day": d(28), "version": "3"}
    final = P.decide(SPEC, situation(every_day(d(1), d(21)), d(30), decisions=[promoted, done]))
    assert isinstance(final, P.Wait) and "no more retrains" in final.note
    # A promotion on a full window already (the monthly loop's): no refresh.
    full = {**promoted, "day": d(31)}
    assert (
        "no more retrains" in P.decide(SPEC, situation(every_day(d(1), d(31)), d(31), decisions=[full])).note
    )


def test_a_candidate_not_promoted_is_retried_after_the_cool_down_and_at_most_max_attempts():
    first = {
        "episode_start": d(1),
        "kind": "not_promoted",
        "day": d(21),
        "version": "2",
        "effective_from": None,
    }
    cooling = P.decide(SPEC, situation(every_day(d(1), d(27)), d(27), decisions=[first]))
    assert isinstance(cooling, P.Wait) and cooling.until == d(28)
    assert "cools down until 2022-01-28" in cooling.note
    again = P.decide(SPEC, situation(every_day(d(1), d(28)), d(28), decisions=[first]))
    assert isinstance(again, P.Retrain) and again.attempt == 2
    second = {**first, "kind": "refused", "day": d(28), "version": None}
    later = d(1) + timedelta(days=39)
    over = P.decide(SPEC, situation(every_day(d(1), later), later, decisions=[first, second]))
    assert isinstance(over, P.Wait) and "2 retrain(s) tried, none promoted" in over.note


def test_a_retrain_in_flight_or_a_champion_trained_after_the_change_asks_for_none():
    assert "is in flight" in P.decide(SPEC, situation(every_day(d(1), d(21)), d(21), in_flight=True)).note
    covered = [{"model_version": "2", "effective_from": d(22), "window_end": d(21)}]
    note = P.decide(SPEC, situation(every_day(d(1), d(25)), d(25), timeline=covered)).note
    assert "trained on data up to 2022-01-21, after the change" in note


def test_a_window_it_can_tell_will_be_refused_is_not_requested():
    few = P.decide(SPEC, situation(every_day(d(1), d(21)), d(21), scored=200))
    assert isinstance(few, P.Wait)
    assert "holds 4,200 scored trips, fewer than retraining.min_rows=5,000; waiting for more data" in few.note
    assert P.foreseen_refusal(SPEC, {d(20): 9000}, d(1), d(21)) == (
        "the window 2022-01-01 .. 2022-01-21 has no monitored trips before its holdout (2022-01-15 on)"
    )
    assert P.foreseen_refusal(SPEC, {d(2): 9000}, d(1), d(21)).endswith(
        "has no monitored trips in its holdout (2022-01-15 on)"
    )


def test_an_episode_that_resolved_by_itself_asks_for_no_retrain():
    now = situation([d(1), d(2)], d(10))
    assert P.decide(SPEC, now).note == "episode since 2022-01-01 resolved on 2022-01-05 without a retrain"


def test_shadow_scoring_follows_a_promotion_for_shadow_days_only():
    timeline = [
        {"model_version": "1", "effective_from": date(2021, 2, 1), "previous_version": None, "kind": "first"},
        {"model_version": "2", "effective_from": d(22), "previous_version": "1", "kind": "promoted"},
    ]
    assert T.shadow_on(timeline, d(21), 14) is None
    assert [T.shadow_on(timeline, day, 14) for day in (d(22), d(31), date(2022, 2, 4))] == ["1", "1", "1"]
    assert T.shadow_on(timeline, date(2022, 2, 5), 14) is None
    rolled = [
        *timeline,
        {"model_version": "1", "effective_from": d(28), "previous_version": "2", "kind": "rolled_back"},
    ]
    assert T.shadow_on(rolled, d(29), 14) is None


# --- the paired comparison -----------------------------------------------------------------------
def test_moments_pool_exactly_as_over_all_trips():
    rng = np.random.default_rng(3)
    new = [rng.normal(0, 8, n) for n in (500, 1200, 80)]
    old = [e + rng.normal(0.1, 1.5, len(e)) for e in new]
    pooled = Moments.pool([Moments.of(a, b) for a, b in zip(new, old, strict=True)])
    whole = Moments.of(np.concatenate(new), np.concatenate(old))
    assert pooled.n == whole.n == 1780
    for field in ("mean", "sd", "old_mse"):
        assert getattr(pooled, field) == pytest.approx(getattr(whole, field), rel=1e-12)


def test_the_interval_is_the_paired_t_interval_of_squared_errors_in_minutes_of_rmse():
    rng = np.random.default_rng(5)
    old = rng.normal(0, 9, 4000)
    new = old * 0.97 + rng.normal(0, 0.5, 4000)  # slightly better, paired
    c = compare(Moments.of(new, old), 0.95)
    rmse_new, rmse_old = math.sqrt(np.mean(new**2)), math.sqrt(np.mean(old**2))
    assert (c.new_rmse, c.old_rmse) == (pytest.approx(rmse_new), pytest.approx(rmse_old))
    assert c.diff == pytest.approx(rmse_new - rmse_old)
    diff = new**2 - old**2
    low, high = stats.t.interval(0.95, len(diff) - 1, loc=diff.mean(), scale=stats.sem(diff))
    scale = 1 / (rmse_new + rmse_old)
    assert (c.low, c.high) == (pytest.approx(low * scale, rel=1e-3), pytest.approx(high * scale, rel=1e-3))
    assert c.new_is_better and not c.new_is_worse


def test_a_tie_is_inside_the_noise():
    rng = np.random.default_rng(11)
    shared = rng.normal(0, 9, 3000)  # what both models get wrong alike
    old, new = shared + rng.normal(0, 2, 3000), shared + rng.normal(0, 2, 3000)  # as good, trip by trip apart
    c = compare(Moments.of(new, old), 0.95)
    assert c.low < 0 < c.high
    assert not c.new_is_better and not c.new_is_worse and not c.exceeds(0.0)
