"""deploy/helm/values.yaml: the Kubernetes scale-out path, checked without a cluster.

Exercises the values file for Dagster's official Helm chart: it parses as YAML, validates
against the chart's values schema (deploy/helm/dagster-values.schema.json, the subset of the
chart's own values.schema.json this file touches, see its $comment), uses no key the chart
does not know, and agrees with what the compose stack runs: the same run queue and retrain
limit as dagster.yaml (and `make dev`'s local instance), backfill runs leaving one slot of
the queue free in all three, the same code location, PostgreSQL through psycopg2, telemetry off,
no secret written in the file. Replaced: Helm and Kubernetes (no `helm template` or cluster
here); the schema is the chart's, vendored, because the chart cannot be downloaded offline.
"""

from __future__ import annotations

import json
import re

import jsonschema
import pytest
import yaml

from mlops_assets.settings import Settings
from mlops_assets_tests.stack.support import REPO, SECRETS, compose, dotenv

VALUES_FILE = REPO / "deploy" / "helm" / "values.yaml"
SCHEMA_FILE = REPO / "deploy" / "helm" / "dagster-values.schema.json"


@pytest.fixture(scope="module")
def values() -> dict:
    return yaml.safe_load(VALUES_FILE.read_text())


@pytest.fixture(scope="module")
def schema() -> dict:
    return json.loads(SCHEMA_FILE.read_text())


def resolve(schema: dict, node: dict) -> dict:
    while "$ref" in node:
        node = schema["definitions"][node["$ref"].rsplit("/", 1)[1]]
    return node


def unknown_keys(schema: dict, node: dict, value, path: str = "") -> list[str]:
    """Keys of ``value`` that the schema node does not define (at any depth)."""
    node = resolve(schema, node)
    options = [resolve(schema, o) for o in node.get("anyOf", [])] or [node]
    found = []
    if isinstance(value, dict):
        with_props = [o for o in options if o.get("properties")]
        if with_props:
            properties = with_props[0]["properties"]
            for key, item in value.items():
                if key not in properties:
                    found.append(f"{path}.{key}".lstrip("."))
                else:
                    found += unknown_keys(schema, properties[key], item, f"{path}.{key}")
    elif isinstance(value, list):
        items = [o["items"] for o in options if "items" in o] or [node.get("items")]
        if items[0]:
            for i, item in enumerate(value):
                found += unknown_keys(schema, items[0], item, f"{path}[{i}]")
    return found


def test_values_validate_against_the_charts_schema(values, schema):
    jsonschema.Draft7Validator.check_schema(schema)
    jsonschema.Draft7Validator(schema).validate(values)
    assert unknown_keys(schema, schema, values) == []
    # ...and the validation bites: a wrong type, a wrong enum and a misspelt key are refused.
    broken = yaml.safe_load(VALUES_FILE.read_text())
    broken["runLauncher"]["type"] = "K8sRunLauncherr"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft7Validator(schema).validate(broken)
    broken = yaml.safe_load(VALUES_FILE.read_text())
    broken["dagsterDaemon"]["runCoordinator"]["config"]["queuedRunCoordinator"]["maxConcurrentRuns"] = "8"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft7Validator(schema).validate(broken)
    broken = yaml.safe_load(VALUES_FILE.read_text())
    broken["dagster-user-deployments"]["deployments"][0]["envSecret"] = []
    assert unknown_keys(schema, schema, broken) == ["dagster-user-deployments.deployments[0].envSecret"]


def queue_limits(max_runs: int, tag_limits: list[dict]) -> dict:
    """A run queue's limits in one shape: max runs, and each tag limit by key."""
    return {"max": max_runs, **{t["key"]: (t.get("value"), t["limit"]) for t in tag_limits}}


def yaml_queue(config: dict) -> dict:
    return queue_limits(config["max_concurrent_runs"], config["tag_concurrency_limits"])


def test_the_queue_and_instance_settings_match_dagster_yaml(values):
    instance = yaml.safe_load((REPO / "dagster.yaml").read_text())
    local_dev = yaml.safe_load((REPO / "mlops_assets" / "local_instance.yaml").read_text())
    queue = values["dagsterDaemon"]["runCoordinator"]
    assert (
        queue["type"]
        == instance["run_coordinator"]["class"]
        == local_dev["run_coordinator"]["class"]
        == "QueuedRunCoordinator"
    )
    k8s = queue["config"]["queuedRunCoordinator"]
    queues = {
        "compose (dagster.yaml)": yaml_queue(instance["run_coordinator"]["config"]),
        "make dev": yaml_queue(local_dev["run_coordinator"]["config"]),
        "helm": queue_limits(k8s["maxConcurrentRuns"], k8s["tagConcurrencyLimits"]),
    }
    for where, limits in queues.items():
        # one retrain per model in flight, everywhere
        assert limits["mlops/retrain"] == ({"applyLimitPerUniqueValue": True}, 1), where
        # backfill runs, all backfills together, leave one slot for the schedule, retrains, training
        assert limits["dagster/backfill"] == (None, limits["max"] - 1), where
        assert set(limits) == {"max", "mlops/retrain", "dagster/backfill"}, where
    assert queues["make dev"]["max"] == 3  # a 2-core laptop (local_instance.yaml says why)
    # the Kubernetes deployment splits backfills, with a value the code location accepts
    env = values["dagster-user-deployments"]["deployments"][0]["env"]
    days = Settings.from_env(env).backfill_days_per_run
    assert days is not None and days >= 7
    assert (
        values["dagsterDaemon"]["runMonitoring"]["enabled"] is instance["run_monitoring"]["enabled"] is True
    )
    assert values["telemetry"]["enabled"] is instance["telemetry"]["enabled"] is False
    postgres = values["postgresql"]
    assert postgres["enabled"] is False  # external, managed PostgreSQL
    assert postgres["postgresqlScheme"] == instance["storage"]["postgres"]["postgres_db"]["scheme"]
    assert values["generatePostgresqlPasswordSecret"] is False and values["global"]["postgresqlSecretName"]
    assert values["runLauncher"]["type"] == "K8sRunLauncher"  # a pod per run
    assert values["migrate"]["enabled"] is True


def test_the_code_location_is_the_one_compose_serves(values):
    (deployment,) = values["dagster-user-deployments"]["deployments"]
    code_server = compose(dotenv(**SECRETS))["services"]["user-code"]["command"]
    args = deployment["codeServerArgs"]
    assert (
        args[args.index("-m") + 1] == code_server[code_server.index("-m") + 1] == "mlops_assets.definitions"
    )
    location = code_server[code_server.index("--location-name") + 1]
    assert args[args.index("--location-name") + 1] == location
    assert deployment["includeConfigInLaunchedRuns"]["enabled"] is True  # runs get env, secrets, volumes
    mounts = {m["name"]: m["mountPath"] for m in deployment["volumeMounts"]}
    assert mounts["mlops-home"] == deployment["env"]["MLOPS_HOME"]
    (volume,) = deployment["volumes"]
    assert volume["name"] == "mlops-home" and "persistentVolumeClaim" in volume
    # the image's unprivileged user
    uid = re.search(r"ARG APP_UID=(\d+)", (REPO / "Dockerfile").read_text()).group(1)
    assert deployment["podSecurityContext"]["runAsUser"] == int(uid)


def test_no_secret_is_written_in_the_values(values):
    def walk(node, path=""):
        if isinstance(node, dict):
            for key, item in node.items():
                yield from walk(item, f"{path}.{key}")
        elif isinstance(node, list):
            for i, item in enumerate(node):
                yield from walk(item, f"{path}[{i}]")
        else:
            yield path, node

    for path, value in walk(values):
        key = path.rsplit(".", 1)[-1]
        # a password or token value (postgresqlPassword, ...) would be written here in clear
        assert not (isinstance(value, str) and re.search(r"(password|token|secretkey)$", key, re.I)), path
        assert not re.search(r"://[^/@\s]+:[^/@\s]+@", str(value)), f"credentials in {path}"
    assert "postgresqlPassword" not in values["postgresql"]
    (deployment,) = values["dagster-user-deployments"]["deployments"]
    assert "METRICS_DATABASE_URL" not in deployment["env"]  # it carries a password: a Secret
    assert [s["name"] for s in deployment["envSecrets"]] == ["mlops-assets-env"]
    # every key of that Secret the code reads is documented where the Secret is created
    scale_out = (REPO / "docs" / "scale-out.md").read_text()
    for key in ("METRICS_DATABASE_URL", "SMTP_PASSWORD", "SERVING_RELOAD_TOKEN", "MLFLOW_TRACKING_PASSWORD"):
        assert key in VALUES_FILE.read_text() and key in scale_out
    assert "MLFLOW_TRACKING_PASSWORD" not in deployment["env"]  # a secret: in the Secret only


def test_services_the_chart_does_not_deploy_are_said_to_be_deployed_separately(values):
    """The chart deploys Dagster only: the MLflow server and the prediction service the code
    location talks to are placeholders, and the values and docs/scale-out.md say so."""
    (deployment,) = values["dagster-user-deployments"]["deployments"]
    text = VALUES_FILE.read_text()
    scale_out = (REPO / "docs" / "scale-out.md").read_text()
    assert "NOT deployed" in text and "deploy them separately" in text
    for name in ("MLFLOW_TRACKING_URI", "SERVING_URL"):
        assert name in deployment["env"]
    # nothing in the values deploys them: no key of the chart's describes MLflow or serving
    chart_keys = set(values) - {"dagster-user-deployments"}
    assert not any("mlflow" in k.lower() or "serving" in k.lower() for k in chart_keys)
    assert "deployed separately" in scale_out
    # the code location logs in to MLflow as compose's user-code does
    assert deployment["env"]["MLFLOW_TRACKING_USERNAME"]
