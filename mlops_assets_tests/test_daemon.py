"""The drift alert sensor under the real Dagster daemon.

Starts ``dagster-daemon run`` on a test instance (a temporary DAGSTER_HOME) with the real
workspace, turns the sensor on with the real CLI, and waits for its tick to email a real SMTP
server on loopback (aiosmtpd) and for the retrain run it requests to register and promote a
model in a real MLflow store. Nothing is faked. The daemon's code location is configured the
way a deployment's is, through its environment (SMTP_HOST, SMTP_PORT, ALERT_EMAIL_TO and the
test's MLOPS_HOME / TRIP_DATA_DIR); the test itself reads and writes the same stores through
``Settings`` values.
"""

import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

from bench.support import free_port, start_process, stop_process, wait_for
from mlops_assets import resources as R
from mlops_assets.alerting.sensor import sensor_name
from mlops_assets.definitions import build_defs
from mlops_assets.training.retrain_asset import RETRAIN_TAG, TRIGGER_RULE_TAG, TRIGGER_VALUE_TAG
from mlops_assets_tests.helpers import default_spec
from mlops_assets_tests.test_alerting import SmtpServer, put_rows
from mlops_core.specs import PACKAGED_SPECS_DIR

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
SPEC = default_spec()


@pytest.mark.e2e
def test_daemon_tick_emails_once_and_runs_the_retrain(home, settings, resources, tmp_path):
    port = free_port()
    # The packaged spec with its retrain rules at once (the trailing window of the breach day):
    # the retraining policy's wait for data after the change is test_retraining_policy.py's.
    specs = tmp_path / "specs"
    specs.mkdir()
    packaged = (PACKAGED_SPECS_DIR / "green_taxi_duration.yaml").read_text()
    assert packaged.count("retrain: true") == 2
    (specs / "green_taxi_duration.yaml").write_text(packaged.replace("retrain: true", "retrain: at_once"))
    # The environment of the processes started below (the code location reads it there).
    env = {
        **os.environ,
        "MODEL_SPECS_DIR": str(specs),
        "SMTP_HOST": "127.0.0.1",
        "SMTP_PORT": str(port),
        "ALERT_EMAIL_TO": "oncall@example.com",
    }
    # v1 was trained on 2022-01: a week of February breaches is not covered by it. The retrain's
    # window (the 28 days ending 2022-02-07) needs February's first trips.
    defs = build_defs([SPEC], resources)
    assert dg.materialize(
        list(defs.assets),
        selection=[dg.AssetKey([SPEC.name, "trips"])],
        resources=defs.resources,
        tags={
            "dagster/asset_partition_range_start": "2022-02-01",
            "dagster/asset_partition_range_end": "2022-02-07",
        },
    ).success
    db = R.metrics_db(settings)
    # A week of drift breaches, and the model's error 1.6 times its holdout RMSE on the last two
    # days: the packaged spec's quality rule (rmse_ratio > 1.5 for 2 days) breaches on 02-07.
    put_rows(
        db,
        {f"2022-02-0{d}": 0.25 + d / 1000 for d in range(1, 8)},
        extra={"2022-02-06": {"rmse_ratio": 1.6}, "2022-02-07": {"rmse_ratio": 1.61}},
    )

    out = subprocess.run(
        [str(BIN / "dagster"), "sensor", "start", sensor_name(SPEC), "-w", "workspace.yaml"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert out.returncode == 0, out.stderr

    instance = dg.DagsterInstance.get()
    with SmtpServer(port) as inbox:
        daemon = start_process(
            [str(BIN / "dagster-daemon"), "run", "-w", "workspace.yaml"],
            cwd=REPO,
            log_path=tmp_path / "daemon.log",
            env=env,
        )
        try:
            wait_for(lambda: inbox.messages, timeout=120, what="the alert email")

            def finished_retrain():
                runs = instance.get_runs(filters=dg.RunsFilter(tags={RETRAIN_TAG: SPEC.name}))
                return [r for r in runs if r.is_finished]

            (run,) = wait_for(finished_retrain, timeout=180, what="the retrain run")
            # one more tick after the run: still one email, still one retrain run
            ticks = len(instance.get_ticks(_origin_id(instance), _selector_id(instance)))
            wait_for(
                lambda: len(instance.get_ticks(_origin_id(instance), _selector_id(instance))) > ticks,
                timeout=90,
                what="another sensor tick",
            )
        finally:
            stop_process(daemon)
        log = (tmp_path / "daemon.log").read_text(errors="replace")
        assert run.status == dg.DagsterRunStatus.SUCCESS, log[-4000:]
        assert len(inbox.messages) == 1
        body = inbox.messages[0].get_body(preferencelist=("plain",)).get_content()
        lines = [line for line in body.splitlines() if line.startswith("Threshold breach")]
        assert len(lines) == 8  # both rules' incidents in the one email, every breach day once
        assert inbox.messages[0]["Subject"].startswith("[FIRING] green_taxi_duration: ")
        assert "Threshold breach (>0.20): 2022-02-07 00:00 — 0.2570" in lines
        assert "Threshold breach rmse_ratio (>1.50): 2022-02-07 00:00 — 1.6100" in lines
        assert len(instance.get_runs(filters=dg.RunsFilter(tags={RETRAIN_TAG: SPEC.name}))) == 1
    assert run.tags["dagster/partition"] == "2022-02-07"
    assert run.tags[TRIGGER_RULE_TAG] == "prediction_drift > 0.20"
    assert run.tags[TRIGGER_VALUE_TAG] == "0.2570"
    assert R.model_registry(settings).champion(SPEC.name) == "2"
    state = instance.get_instigator_state(_origin_id(instance), _selector_id(instance))
    assert state.status.value == "RUNNING"
    assert state.instigator_data.cursor  # the cursor is kept in the instance


def _sensor_state(instance):
    (state,) = [s for s in instance.all_instigator_state() if s.name == sensor_name(SPEC)]
    return state


def _origin_id(instance):
    return _sensor_state(instance).instigator_origin_id


def _selector_id(instance):
    return _sensor_state(instance).selector_id
