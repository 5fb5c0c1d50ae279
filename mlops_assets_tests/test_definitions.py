"""The code location loads: in-process, through ``dagster definitions validate`` on
workspace.yaml, and through ``dg check defs`` (the real CLIs, as a user runs them)."""

import subprocess
import sys
from pathlib import Path

import dagster as dg

from mlops_assets import constants as C
from mlops_assets.definitions import defs
from mlops_assets.partitions import daily_partitions, monthly_partitions

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def test_defs_load_with_the_expected_shape():
    dg.Definitions.validate_loadable(defs)
    graph = defs.resolve_asset_graph()
    spec = "green_taxi_duration"
    trips, model = dg.AssetKey([spec, C.TRIPS]), dg.AssetKey([spec, C.DURATION_MODEL])
    assert graph.get(trips).partitions_def == daily_partitions
    assert graph.get(model).partitions_def == monthly_partitions
    assert graph.get(model).parent_keys == {trips}
    assert graph.get(trips).group_name == spec
    assert defs.resolve_job_def(C.TRAIN_JOB).partitions_def == monthly_partitions
    assert {s.name for s in defs.schedules} >= {"monthly_training_schedule"}
    assert graph.get(trips).backfill_policy == dg.BackfillPolicy.single_run()


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(args, cwd=REPO, capture_output=True, text=True, timeout=120)


def test_dagster_cli_validates_the_workspace():
    out = run(str(BIN / "dagster"), "definitions", "validate", "-w", "workspace.yaml")
    assert out.returncode == 0, out.stderr
    assert "Validation successful for code location mlops_assets" in out.stderr + out.stdout


def test_dg_check_defs():
    out = run(str(BIN / "dg"), "check", "defs")
    assert out.returncode == 0, out.stderr
    assert "All definitions loaded successfully" in out.stdout + out.stderr
