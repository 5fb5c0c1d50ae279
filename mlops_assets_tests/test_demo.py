"""``make demo`` as a new user runs it: ``python -m mlops_assets.demo`` in a subprocess.

Offline (the synthetic generator and its scenario calendar) the demo tells the whole story
through the same code as real data, as runs of the named jobs (the retrain with the alert
sensor's name and run key, as the daemon tags it): quiet days, a storm that is recorded but too small to
alert on, a lasting change that breaches both the drift and the quality rule, one email, a
retrain that beats the mean and is promoted, and recovery. With a first model that loses to
the mean predictor (the real 2022-01 file with its holdout's distances scrambled) it ends
with a clear message, not a traceback. Run a second time on the same home (real January 2022)
it tells the same story and sends, registers and promotes nothing again. Real components
throughout: the demo's own Dagster instance, SQLite metrics DB, MLflow store and outbox in a
temporary MLOPS_HOME.
"""

import email
import email.policy
import os
import re
import statistics
import subprocess
import sys
from datetime import date, datetime
from pathlib import Path

import dagster as dg
import pytest

from mlops_assets import constants as C
from mlops_assets.alerting.store import AlertStore, IncidentStore
from mlops_assets.lib.storage.engine import MetricsDB
from mlops_assets.monitoring.store import DailyMetricsStore
from mlops_assets.training.store import TimelineStore
from mlops_assets_tests.helpers import default_spec, scrambled_copy
from mlops_core.registry import MlflowRegistry

REPO = Path(__file__).resolve().parents[1]
SPEC = default_spec()
# Lines the demo does not print itself: Dagster's log records and MLflow's registration notes.
FOREIGN = re.compile(r" - dagster - |^(Successfully registered model|Registered model|Created version) ")


def run_demo(home: Path, **env) -> subprocess.CompletedProcess:
    variables = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("MLOPS_", "TRIP_", "METRICS_", "MLFLOW_", "SMTP_", "DAGSTER_", "MODEL_"))
    }
    variables.update(MLOPS_HOME=str(home), DAGSTER_HOME=str(home / "dagster_home"), **env)
    return subprocess.run(
        [sys.executable, "-m", "mlops_assets.demo"],
        cwd=REPO,
        env=variables,
        capture_output=True,
        text=True,
        timeout=900,
    )


def demo_runs(home: Path) -> list:
    """The runs the demo left in its Dagster instance, oldest first."""
    with dg.DagsterInstance.from_config(str(home / "dagster_home")) as instance:
        return list(reversed(instance.get_runs()))


def own_lines(proc: subprocess.CompletedProcess) -> list[str]:
    return [line for line in proc.stdout.splitlines() if line.strip() and not FOREIGN.search(line)]


@pytest.mark.e2e
def test_the_offline_demo_tells_the_whole_story(tmp_path, report_figure):
    home = tmp_path / "home"
    proc = run_demo(home, TRIP_SOURCE="synthetic", DEMO_MONTHS="2021-02,2021-03,2022-01")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    lines = own_lines(proc)
    assert lines and all(line.startswith("[synthetic]") for line in lines), [
        line for line in lines if not line.startswith("[synthetic]")
    ][:5]
    assert "storm 2021-02-01 .. 2021-02-02; new district 2021-03-08 on" in proc.stdout
    # Where: the story names the new district (the generator's area East) on the alert days.
    assert "Where the model is wrong on alert days" in proc.stdout
    assert "drop-off borough East: " in proc.stdout

    db = MetricsDB(url=f"sqlite:///{home / 'metrics.db'}")
    rows = {r["timestamp"].date(): r for r in [r.as_dict() for r in DailyMetricsStore(db).rows(SPEC.name)]}
    alerts = AlertStore(db).all(SPEC.name)
    quality_rule = next(r for r in SPEC.monitoring.rules if r.metric == "rmse_ratio")

    # The storm: few trips and a large error, recorded, never alerted on (under min_rows).
    for day in (date(2021, 2, 1), date(2021, 2, 2)):
        assert rows[day]["n_rows"] < quality_rule.min_rows
        assert rows[day]["rmse_ratio"] > quality_rule.threshold
    quiet = [r for d, r in rows.items() if date(2021, 2, 3) <= d <= date(2021, 3, 7)]
    assert statistics.median(r["prediction_drift"] for r in quiet) < 0.1
    assert statistics.median(r["rmse_ratio"] for r in quiet) < 1.2
    assert all(a["timestamp"] >= datetime(2021, 3, 8) for a in alerts)

    # The new district: both rules breach, one incident each, every breach day in one email
    # ([FIRING]); both resolve with v2's promotion, told in one more ([RESOLVED]).
    by_rule = {rule: [a for a in alerts if a["rule"] == rule] for rule in ("prediction_drift", "rmse_ratio")}
    assert by_rule["prediction_drift"][0]["timestamp"] == datetime(2021, 3, 8)
    assert by_rule["rmse_ratio"], "the quality rule never fired on the new district"
    assert {a["status"] for a in alerts} == {"sent"}
    assert len({a["message_id"] for a in alerts}) == 1
    subjects = [
        email.message_from_bytes(p.read_bytes(), policy=email.policy.default)["Subject"]
        for p in sorted((home / "outbox").glob("*.eml"))
    ]
    drift_worst = max(a["value"] for a in by_rule["prediction_drift"])
    quality_worst = max(a["value"] for a in by_rule["rmse_ratio"])
    quality_opened = by_rule["rmse_ratio"][0]["timestamp"].date()
    assert subjects == [
        f"[FIRING] green_taxi_duration: prediction_drift > 0.20 opened 2021-03-08 (worst {drift_worst:.4f}); "
        f"rmse_ratio > 1.50 opened {quality_opened} (worst {quality_worst:.4f})",
        "[RESOLVED] green_taxi_duration: prediction_drift > 0.20 resolved 2021-04-01 after 25 day(s) "
        f"(worst {drift_worst:.4f}); rmse_ratio > 1.50 resolved 2021-04-01 after "
        f"{(date(2021, 4, 1) - quality_opened).days + 1} day(s) (worst {quality_worst:.4f})",
    ]
    incidents = IncidentStore(db).all(SPEC.name)
    assert [(i["rule"], i["status"], i["resolved_day"], i["emails_sent"]) for i in incidents] == [
        ("prediction_drift", "resolved", date(2021, 4, 1), 2),
        ("rmse_ratio", "resolved", date(2021, 4, 1), 2),
    ]
    assert "v2 promoted, in effect from 2021-04-01, with no breach since" in proc.stdout

    # One retrain, promoted, beating the mean; then recovery under it.
    timeline = TimelineStore(db).entries(SPEC.name)
    assert [(t["model_version"], t["effective_from"]) for t in timeline] == [
        ("1", date(2021, 2, 1)),
        ("2", date(2021, 4, 1)),
    ]
    registry = MlflowRegistry(tracking_uri=f"sqlite:///{home / 'mlflow.db'}", cache_dir=str(home / "models"))
    tags = registry.version_tags(SPEC.name, "2")
    assert tags["decision"] == "promoted"
    assert float(tags["candidate_rmse"]) < float(tags["mean_baseline_rmse"])
    january = [r for d, r in rows.items() if d.year == 2022]
    assert {r["model_version"] for r in january} == {"2"}
    assert statistics.median(r["prediction_drift"] for r in january) < 0.1
    assert statistics.median(r["rmse_ratio"] for r in january) < 1.2
    # The runs are the named jobs', tagged by stage; the retrain carries the sensor's tags.
    runs = demo_runs(home)
    assert [(r.job_name, r.tags["mlops/stage"]) for r in runs] == [
        ("metrics_backfill_to_postgres", "training-data"),
        ("train_duration_model", "training"),
        ("metrics_backfill_to_postgres", "monitoring"),
        ("metrics_backfill_to_postgres", "monitoring"),
        ("retrain_duration_model", "retraining"),
        ("metrics_backfill_to_postgres", "monitoring"),
        ("draw_monitoring_history", "history"),
    ]
    assert all(r.status == dg.DagsterRunStatus.SUCCESS for r in runs)
    assert {(r.tags["mlops/demo"], r.tags["mlops/spec"]) for r in runs} == {("true", SPEC.name)}
    assert [
        r.tags["dagster/asset_partition_range_start"] for r in runs if r.job_name == C.MONITORING_JOB
    ] == [
        "2021-01-01",
        "2021-02-01",
        "2021-03-01",
        "2022-01-01",
    ]
    (retrain,) = [r for r in runs if r.job_name == C.RETRAIN_JOB]
    assert retrain.tags["dagster/sensor_name"] == "drift_alert_sensor__green_taxi_duration"
    # the episode since 2021-03-08, its first attempt, on the window ending 2021-03-31 (21 and
    # more days after the change: retraining.days_after_change)
    assert retrain.tags["dagster/run_key"] == "retrain:green_taxi_duration:2021-03-08:1"
    assert retrain.tags["dagster/partition"] == "2021-03-31"
    assert retrain.tags["mlops/trigger_rule"] == "prediction_drift > 0.20"
    assert not any("dagster/sensor_name" in r.tags for r in runs if r is not retrain)

    storm = [rows[date(2021, 2, d)] for d in (1, 2)]
    report_figure(
        "offline demo: storm rmse_ratio "
        + "/".join(f"{r['rmse_ratio']:.2f} on {r['n_rows']} trips" for r in storm)
        + f" (no alert); {len(by_rule['prediction_drift'])} drift + {len(by_rule['rmse_ratio'])} quality "
        f"breaches in 1 [FIRING] email, 1 [RESOLVED]; v2 {float(tags['candidate_rmse']):.3f} vs mean "
        f"{float(tags['mean_baseline_rmse']):.3f}; 2022-01 drift median "
        f"{statistics.median(r['prediction_drift'] for r in january):.3f}"
    )


@pytest.mark.e2e
def test_a_first_model_that_loses_to_the_mean_ends_the_demo_clearly(tmp_path, trip_data_dir):
    data = scrambled_copy(trip_data_dir, tmp_path / "tlc")
    specs = tmp_path / "specs"
    specs.mkdir()
    text = Path(SPEC.source_file).read_text()
    assert 'month: "2021-01"' in text
    (specs / "green_taxi_duration.yaml").write_text(text.replace('month: "2021-01"', 'month: "2022-01"'))

    proc = run_demo(
        tmp_path / "home", TRIP_DATA_DIR=str(data), MODEL_SPECS_DIR=str(specs), DEMO_MONTHS="2022-02"
    )
    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "Traceback" not in proc.stdout + proc.stderr
    out = proc.stdout
    assert re.search(
        r"v1: holdout RMSE [\d.]+ min \(mean predictor [\d.]+\); not promoted \(holdout RMSE", out
    )
    assert "does not beat the mean predictor" in out
    assert "No model of green_taxi_duration is accepted: v1 was registered in MLflow" in out
    assert "Monitor" not in out  # it stops before monitoring


def home_state(home: Path) -> dict:
    """What a demo leaves on its home: metrics rows (less which run wrote them, and when), alerts,
    model timeline, outbox, MLflow versions with their tags, runs and the champion."""
    db = MetricsDB(url=f"sqlite:///{home / 'metrics.db'}")
    provenance = ("dagster_run_id", "computed_at")
    registry = MlflowRegistry(tracking_uri=f"sqlite:///{home / 'mlflow.db'}", cache_dir=str(home / "models"))
    client = registry.client()
    versions = client.search_model_versions(f"name='{SPEC.name}'")
    return {
        "rows": [
            {k: v for k, v in r.as_dict().items() if k not in provenance}
            for r in DailyMetricsStore(db).rows(SPEC.name)
        ],
        "alerts": AlertStore(db).all(SPEC.name),
        "timeline": TimelineStore(db).entries(SPEC.name),
        "outbox": sorted(p.name for p in (home / "outbox").glob("*.eml")),
        "versions": {str(v.version): dict(v.tags) for v in versions},
        "mlflow_runs": len(client.search_runs([registry.experiment_id(SPEC.name)])),
        "champion": registry.champion(SPEC.name),
    }


def summary(proc: subprocess.CompletedProcess) -> str:
    """The demo's closing story: the timeline tables, alerts, retrains, champion, where to look."""
    return proc.stdout[proc.stdout.index("Timeline (") :]


@pytest.mark.e2e
def test_a_second_demo_on_the_same_home_tells_the_same_story(tmp_path, trip_data_dir):
    """Run twice on one home (2022-01: 31 drift breaches, one email, a retrain that is
    promoted): the second run finds v1 again, rightly not promoted over the newer champion v2,
    carries on, and ends as the first did; nothing is emailed, registered or promoted twice, no
    retrain runs again, and v1's MLflow tags still record its promotion."""
    home = tmp_path / "home"
    env = {"TRIP_DATA_DIR": str(trip_data_dir), "DEMO_MONTHS": "2022-01"}
    first = run_demo(home, **env)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    before = home_state(home)
    assert before["champion"] == "2" and len(before["versions"]) == 2
    assert before["versions"]["1"]["decision"] == before["versions"]["2"]["decision"] == "promoted"
    assert len(before["outbox"]) == 1 and before["alerts"] and len(before["rows"]) == 31

    second = run_demo(home, **env)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    out = second.stdout
    assert "Traceback" not in out + second.stderr
    assert "No model of" not in out
    assert "! MLOPS_HOME already holds an earlier run" in out
    assert re.search(
        r"\n    v1: holdout RMSE [\d.]+ min \(mean predictor [\d.]+\); not promoted \(trained on data up "
        r"to 2021-01-31, older than champion v2's \(up to 2022-01-31\)\)\n    champion v2 stays;",
        out,
    ), out[:3000]
    assert "requested: retrain" not in out
    assert summary(second) == summary(first)
    assert "retrains: 1, promoted: 1" in summary(second)
    assert home_state(home) == before

    runs = demo_runs(home)
    assert all(r.status == dg.DagsterRunStatus.SUCCESS for r in runs)
    assert [r.job_name for r in runs].count(C.RETRAIN_JOB) == 1
