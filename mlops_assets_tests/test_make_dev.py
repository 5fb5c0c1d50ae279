"""``make dev`` as a person runs it: the real Makefile target, the real ``dagster dev`` (webserver
and daemon) on the local instance of a temporary MLOPS_HOME.

The repository's top level holds the deployed instance's ``dagster.yaml`` (PostgreSQL storage,
run queue, run monitoring). ``dagster dev`` warns on every start when the folder it starts in
holds a ``dagster.yaml`` that is not ``DAGSTER_HOME``'s (``dagster/_cli/dev.py``); ``make dev``
starts it from ``DAGSTER_HOME``. Checked here: its output up to a ready webserver has no such
warning (while the same ``dagster dev`` started from the repository prints it: the check can
see it), the instance it serves is the local one (``mlops_assets/local_instance.yaml``'s run
queue, not the top-level file's), and relative ``TRIP_DATA_DIR`` and ``MODEL_SPECS_DIR`` name
the folders they name from the repository (the code location loads its spec and reads the
data folder). Nothing is faked.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import requests
import yaml

from bench.support import free_port, start_process, stop_process, wait_for, wait_http
from mlops_assets import constants as C
from mlops_assets import local_instance
from mlops_assets_tests.conftest import ENV_VARS
from mlops_assets_tests.helpers import BIN, REPO

pytestmark = pytest.mark.e2e

# What dagster dev logs when its folder holds a dagster.yaml that is not DAGSTER_HOME's.
WARNING = "Found a dagster instance configuration value (dagster.yaml) in the current folder"
INSTANCE = "{ instance { runQueueConfig { maxConcurrentRuns } } }"
RESOURCE = """
query Resource($selector: ResourceSelector!) {
  topLevelResourceDetailsOrError(resourceSelector: $selector) {
    __typename
    ... on ResourceDetails { configuredValues { key value } }
    ... on Error { message }
  }
}"""


def dev_env(home: Path, port: int, **extra: str) -> dict:
    """This process's environment less the settings tests control, with ``dagster dev``'s
    host and port (Click reads ``DAGSTER_CLI_DEV_<OPTION>`` for ``dagster dev --<option>``)."""
    env = {k: v for k, v in os.environ.items() if k not in ENV_VARS and k != "DAGSTER_HOME"}
    env.update(MLOPS_HOME=str(home), DAGSTER_CLI_DEV_HOST="127.0.0.1", DAGSTER_CLI_DEV_PORT=str(port))
    env.update(extra)
    return env


def graphql(url: str, query: str, variables: dict | None = None) -> dict:
    response = requests.post(
        f"{url}/graphql", json={"query": query, "variables": variables or {}}, timeout=60
    )
    response.raise_for_status()
    body = response.json()
    assert "errors" not in body, body["errors"]
    return body["data"]


def test_make_dev_starts_without_the_dagster_yaml_warning(tmp_path, trip_data_dir):
    deployed = yaml.safe_load((REPO / "dagster.yaml").read_text())  # the compose stack's instance
    assert "postgres" in deployed["storage"] and deployed["run_monitoring"]["enabled"] is True
    home, port, log = tmp_path / "home", free_port(), tmp_path / "make-dev.log"
    relative_data = os.path.relpath(trip_data_dir, REPO)
    assert not Path(relative_data).is_absolute()
    relative = {"TRIP_DATA_DIR": relative_data, "MODEL_SPECS_DIR": "mlops_core/model_specs"}

    # The Makefile's own recipe, with this test's Python (BIN) and no install step (-o STAMP).
    command = ["make", "-o", ".venv/.installed-stamp", "dev", f"BIN={BIN}"]
    make = start_process(command, cwd=REPO, log_path=log, env=dev_env(home, port, **relative))
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{url}/server_info", 180, make, log)
        queue = graphql(url, INSTANCE)["instance"]["runQueueConfig"]
        selector = {
            "repositoryLocationName": "mlops_assets",
            "repositoryName": "__repository__",
            "resourceName": C.TRIP_SOURCE,
        }
        source = graphql(url, RESOURCE, {"selector": selector})["topLevelResourceDetailsOrError"]
    finally:
        stop_process(make, timeout=20)
    output = log.read_text(errors="replace")
    assert "Launching Dagster services" in output  # the log is dagster dev's
    assert WARNING not in output
    assert "dagster.yaml" not in output, [line for line in output.splitlines() if "dagster.yaml" in line]

    local = yaml.safe_load(local_instance.TEMPLATE.read_text())["run_coordinator"]["config"]
    assert (home / "dagster_home" / "dagster.yaml").read_text() == local_instance.TEMPLATE.read_text()
    assert (
        queue["maxConcurrentRuns"]
        == local["max_concurrent_runs"]
        != deployed["run_coordinator"]["config"]["max_concurrent_runs"]
    )
    assert source["__typename"] == "ResourceDetails", source
    values = {v["key"]: v["value"] for v in source["configuredValues"]}
    assert values["data_dir"] == f'"{trip_data_dir.resolve()}"', values


def test_the_check_sees_the_warning_of_dagster_dev_started_from_the_repository(tmp_path):
    """The control: ``dagster dev`` from the repository's folder (what ``make dev`` ran before)
    prints the warning, before it launches its services; stopped as soon as it has."""
    home = tmp_path / "home"
    dagster_home = home / "dagster_home"
    local_instance.ensure(dagster_home)
    env = dev_env(home, free_port(), DAGSTER_HOME=str(dagster_home))
    log = tmp_path / "dagster-dev.log"
    dev = start_process(
        [str(BIN / "dagster"), "dev", "-w", "workspace.yaml"], cwd=REPO, log_path=log, env=env
    )
    try:
        wait_for(
            lambda: "Launching Dagster services" in log.read_text(errors="replace"), 60, 0.2, "dagster dev"
        )
    finally:
        stop_process(dev, timeout=20)
    output = log.read_text(errors="replace")
    assert WARNING in output and str(dagster_home) in output
