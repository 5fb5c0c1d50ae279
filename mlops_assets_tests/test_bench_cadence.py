"""bench/cadence.py's pure helpers: breach episodes, the trip-weighted RMSE, the monthly
spans and the per-loop summary, on small hand-made rows (the bench itself runs the code
location; its figures belong to BENCHMARKS.md, not to a test)."""

from datetime import date, datetime

from bench import cadence


def alert(rule: str, day: str) -> dict:
    return {"rule": rule, "timestamp": f"{day} 00:00:00.000000", "value": 0.3}


def test_episodes_are_consecutive_days_of_one_rule():
    alerts = [
        alert("prediction_drift", "2022-01-31"),
        alert("prediction_drift", "2022-02-01"),  # across the month: the same episode
        alert("prediction_drift", "2022-02-02"),
        alert("rmse_ratio", "2022-02-01"),
        alert("rmse_ratio", "2022-02-02"),
        alert("prediction_drift", "2022-02-04"),  # a day without a breach ends it
    ]
    assert cadence.episodes(alerts) == [
        {"rule": "prediction_drift", "first": "2022-01-31", "last": "2022-02-02", "days": 3},
        {"rule": "rmse_ratio", "first": "2022-02-01", "last": "2022-02-02", "days": 2},
        {"rule": "prediction_drift", "first": "2022-02-04", "last": "2022-02-04", "days": 1},
    ]
    assert cadence.first_breach(alerts) == "2022-01-31"
    assert cadence.episodes([]) == [] and cadence.first_breach([]) is None


def test_episodes_take_datetimes_and_dates_too():
    alerts = [
        {"rule": "r", "timestamp": datetime(2021, 3, 8)},
        {"rule": "r", "timestamp": date(2021, 3, 9)},
        {"rule": "r", "timestamp": "2021-03-09 00:00:00"},  # the same day twice counts once
    ]
    assert cadence.episodes(alerts) == [{"rule": "r", "first": "2021-03-08", "last": "2021-03-09", "days": 2}]


def row(day: str, rmse: float | None, n_rows: int, version: str = "1", **more) -> dict:
    return {"timestamp": f"{day}T00:00:00", "rmse": rmse, "n_rows": n_rows, "model_version": version, **more}


def test_weighted_rmse_weighs_days_by_their_trips():
    rows = [
        row("2022-01-10", 10.0, 100),
        row("2022-01-11", 20.0, 300),
        row("2022-01-12", None, 0),  # a day without trips: no RMSE, not counted
        row("2022-01-13", 40.0, 100),
    ]
    whole = cadence.weighted_rmse(rows)
    assert whole["rmse"] == (10 * 100 + 20 * 300 + 40 * 100) / 500
    assert (whole["days"], whole["trips"]) == (3, 500)
    window = cadence.weighted_rmse(rows, "2022-01-11", "2022-01-12")
    assert (window["rmse"], window["days"], window["trips"]) == (20.0, 1, 300)
    assert cadence.weighted_rmse(rows, "2022-02-01", "2022-02-28")["rmse"] is None


def test_month_spans_clip_the_period():
    assert cadence.month_spans("2024-02-15", "2024-04-03") == [
        ("2024-02-15", "2024-02-29"),
        ("2024-03-01", "2024-03-31"),
        ("2024-04-01", "2024-04-03"),
    ]
    assert cadence.month_spans("2021-02-01", "2021-02-01") == [("2021-02-01", "2021-02-01")]
    assert len(cadence.days_between("2022-01-01", "2022-03-31")) == 90


def run(success: bool, **metadata) -> dict:
    out = {"job": "retrain_duration_model", "partition": "x", "success": success, "metadata": metadata}
    if not success:
        out["error"] = "RetrainRefused: too few rows"
    return out


def request(day: str, run_: dict | None, skipped: bool = False) -> dict:
    tags = {"mlops/trigger_rule": "prediction_drift > 0.20", "mlops/trigger_value": "0.3"}
    entry = {"run_key": f"retrain:m:{day}", "partition": day, "tags": tags, "skipped": skipped}
    if run_ is not None:
        entry["run"] = run_
    return entry


def test_summary_counts_runs_failures_and_margins():
    ok = {"job": "metrics_backfill_to_postgres", "success": True}
    raw = {
        "start": "2022-01-01",
        "end": "2022-01-04",
        "wall_s": 1.0,
        "home": "/tmp/x",
        "emails": 2,
        "train": {"trips": ok, "model": {**ok, "job": "train_duration_model"}},
        "steps": [
            {"label": "2022-01-01", "monitor": ok, "requests": [request("2022-01-01", run(False))]},
            {
                "label": "2022-01-02",
                "monitor": ok,
                "requests": [
                    request(
                        "2022-01-02",
                        run(
                            True,
                            model_version="2",
                            decision="promoted",
                            candidate_holdout_rmse=9.5,
                            champion_holdout_rmse=9.75,
                        ),
                    )
                ],
            },
            {"label": "2022-01-03", "monitor": ok, "requests": [request("2022-01-01", None, skipped=True)]},
            {"label": "2022-01-04", "monitor": {**ok, "success": False, "error": "boom"}, "requests": []},
        ],
        "metrics": [
            row("2022-01-01", 10.0, 100),
            row("2022-01-02", 12.0, 100, "1"),
            row("2022-01-03", 8.0, 200, "2"),
        ],
        "alerts": [
            {**alert("prediction_drift", "2022-01-01"), "message_id": "<a>"},
            {**alert("prediction_drift", "2022-01-02"), "message_id": "<b>"},
        ],
        "timeline": [],
    }
    s = cadence.summarize(raw, "2022-01-03")
    assert (s["retrain_requests"], s["retrain_runs"], s["skipped_requests"]) == (3, 2, 1)
    assert s["failed_runs"] == 2  # the refused retrain and the failed monitoring run
    assert [f["error"] for f in s["failures"]] == ["boom", "RetrainRefused: too few rows"]
    assert [p["version"] for p in s["promotions"]] == ["2"]
    assert s["promotions"][0]["margin"] == -0.25
    assert s["episodes"] == [
        {"rule": "prediction_drift", "first": "2022-01-01", "last": "2022-01-02", "days": 2}
    ]
    assert (s["emails"], s["email_messages"]) == (2, 2)
    assert s["rmse_window"]["rmse"] == 8.0
    assert s["rmse_period"]["rmse"] == (1000 + 1200 + 1600) / 400
    assert [(v["version"], v["days"]) for v in s["served"]] == [("1", 2), ("2", 1)]

    monthly = {**s, "rmse_window": {**s["rmse_window"], "rmse": 4.0}}
    compared = cadence.comparison(s, monthly)
    assert (compared["over"], compared["ratio"]) == ("rmse_window", 2.0)


def test_error_line_drops_the_dotted_path_dagster_puts_before_the_message():
    message = "mlops_assets.training.retrain.RetrainRefused: too few rows\nmore"
    assert cadence.error_line("RetrainRefused", message) == "RetrainRefused: too few rows"
    assert cadence.error_line("ValueError", "bad: value") == "ValueError: bad: value"
    assert cadence.error_line(None, "plain") == "plain"


def test_segments_cut_where_either_loop_changes_model():
    daily = [
        row("2022-01-01", 8.0, 100, "1"),
        row("2022-01-02", 9.0, 100, "4"),
        row("2022-01-03", 11.0, 100, "4"),
        row("2022-01-04", 10.0, 100, "4"),
    ]
    monthly = [
        row("2022-01-01", 8.0, 100, "1"),
        row("2022-01-02", 8.0, 100, "1"),
        row("2022-01-03", 9.0, 300, "2"),
        row("2022-01-04", 7.0, 100, "2"),
    ]
    got = [
        (s["first"], s["last"], s["daily_version"], s["monthly_version"])
        for s in cadence.segments(daily, monthly)
    ]
    assert got == [
        ("2022-01-01", "2022-01-01", "1", "1"),
        ("2022-01-02", "2022-01-02", "4", "1"),
        ("2022-01-03", "2022-01-04", "4", "2"),
    ]
    last = cadence.segments(daily, monthly)[-1]
    assert (last["days"], last["daily_rmse"], last["monthly_rmse"]) == (2, 10.5, (9 * 300 + 7 * 100) / 400)
