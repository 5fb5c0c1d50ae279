"""docker-compose.yml, docker-compose.debug.yml, .env.example, Dockerfile and .dockerignore,
checked without Docker.

Exercises: the compose files against the Compose specification (check-jsonschema's bundled
schema, offline), and the promises they make, read the way Docker Compose reads them (variable
interpolation from .env): healthchecks and start order, named volumes for every piece of
state, every variable documented, no secret in the files, the documented ports (nginx the only
published door of the prediction service; Adminer and PostgreSQL's port for debugging only),
networks that keep the code server away from Grafana and Adminer, memory and CPU limits on
every service, MLflow's login and the clients' credentials, and the wiring between services.
Replaces Docker itself: nothing is built or started here; the other modules of this folder run
the services' commands and configuration files as real processes.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from mlops_assets_tests.stack.support import (
    COMPOSE_FILE,
    DEBUG_COMPOSE_FILE,
    REPO,
    SECRETS,
    MissingVariable,
    bind_source,
    compose,
    compose_strings,
    dotenv,
    env_example,
    raw_compose,
    service_environment,
    variables_used,
)

BIN = Path(sys.executable).parent
DAGSTER_SERVICES = ("dagster-init", "user-code", "dagster-daemon", "dagster-webserver")
# service -> (host port, container port), as docs/deployment.md documents them
DOCUMENTED_PORTS_HEADER = "| service | UI / endpoint | host port | container port | published |"


@pytest.fixture(scope="module")
def config() -> dict:
    """The compose file as Compose sees it with a .env made from .env.example."""
    return compose(dotenv(**SECRETS))


def run_check_jsonschema(path: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(BIN / "check-jsonschema"), "--builtin-schema", "vendor.compose-spec", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_compose_file_validates_against_the_compose_spec(tmp_path):
    for path in (COMPOSE_FILE, DEBUG_COMPOSE_FILE):
        result = run_check_jsonschema(path)
        assert result.returncode == 0, result.stdout + result.stderr
        assert "ok -- validation done" in result.stdout
    # ...and the validator does bite: a misspelt key is refused.
    broken = tmp_path / "docker-compose.yml"
    broken.write_text(
        COMPOSE_FILE.read_text().replace("    restart: unless-stopped\n", "    restrat: no\n", 1)
    )
    result = run_check_jsonschema(broken)
    assert result.returncode != 0
    assert "'restrat' was unexpected" in result.stdout


def test_every_variable_is_documented_and_required_secrets_stop_the_stack():
    text = compose_strings()
    documented = env_example()
    used = variables_used(text) | variables_used(compose_strings(DEBUG_COMPOSE_FILE))
    assert used - set(documented) == set(), "variables used in the compose files but not in .env.example"
    # The variables .env.example leaves empty and marks REQUIRED are exactly the ${VAR:?...} ones.
    required = set(re.findall(r"\$\{([A-Z_][A-Z0-9_]*):\?", text))
    lines = (REPO / ".env.example").read_text().splitlines()
    marked = {
        re.match(r"([A-Z_][A-Z0-9_]*)=", lines[i + 1]).group(1)
        for i, line in enumerate(lines[:-1])
        if line.startswith("# REQUIRED")
    }
    assert required == marked == set(SECRETS)
    assert all(documented[name] == "" for name in required), "a required secret has a default value"
    # A .env copied from .env.example without filling it in does not start.
    with pytest.raises(MissingVariable, match=r"set \w+ in .env"):
        compose(env_example())
    compose(dotenv(**SECRETS))  # filled in, it does


def _is_reference(value: str) -> bool:
    return re.fullmatch(r"\$\{[A-Z_][A-Z0-9_]*(:?[-?][^}]*)?\}", value) is not None


def test_no_secret_is_written_in_the_compose_file():
    raw = raw_compose()
    text = COMPOSE_FILE.read_text()
    for name, service in raw["services"].items():
        for key, value in (service.get("environment") or {}).items():
            if re.search(r"PASSWORD|SECRET|TOKEN|_KEY$", key):
                assert _is_reference(str(value)), f"{name}.{key} must come from .env, got {value!r}"
    # A password inside a URL (user:password@host) is a whole variable too: resolved with each
    # variable standing for itself, every URL's password is one variable's placeholder.
    placeholders = compose({name: f"__{name}__" for name in variables_used(compose_strings())})
    urls = re.findall(r"[a-z0-9+]+://[^\s'\"]+", yaml.safe_dump(placeholders, width=1000))
    with_password = [u for u in urls if re.match(r"[a-z0-9+]+://[^/@]+:[^/@]+@", u)]
    assert len(with_password) == 2  # METRICS_DATABASE_URL, MLFLOW_BACKEND_STORE_URI
    assert "PASSWORD" not in DEBUG_COMPOSE_FILE.read_text()
    for url in with_password:
        password = re.match(r"[a-z0-9+]+://[^/@:]+:([^/@]+)@", url).group(1)
        assert re.fullmatch(r"__[A-Z0-9_]+_PASSWORD__", password), f"literal password in {url}"
    # With the secrets filled in, none of them appears anywhere but where .env puts it.
    resolved = yaml.safe_dump(compose(dotenv(**SECRETS)))
    for secret in SECRETS.values():
        assert secret in resolved
    for secret in SECRETS.values():
        assert secret not in text
    # The configuration files the services mount hold none either.
    for mounted in ("config/mlflow/basic_auth.ini", "config/nginx/serving.conf"):
        content = (REPO / mounted).read_text()
        assert not re.search(r"^\s*admin_password\s*=", content, re.M), mounted
        assert not re.search(r"://[^/@\s]+:[^/@\s]+@", content), mounted
    # dagster.yaml and the Grafana datasource read their passwords from the environment too.
    instance = yaml.safe_load((REPO / "dagster.yaml").read_text())
    assert instance["storage"]["postgres"]["postgres_db"]["password"] == {"env": "DAGSTER_PG_PASSWORD"}
    datasources = yaml.safe_load((REPO / "config" / "grafana_datasources.yaml").read_text())
    for ds in datasources["datasources"]:
        assert ds["secureJsonData"]["password"].startswith("$__env{")


def test_every_service_has_a_healthcheck_or_a_documented_reason_and_starts_in_order(config):
    services = config["services"]
    for name, service in services.items():
        check = service.get("healthcheck")
        if check is None:
            reason = service.get("x-healthcheck-exempt", "")
            assert len(reason.split()) >= 5, f"{name}: no healthcheck and no x-healthcheck-exempt reason"
            assert service.get("restart") == "no", f"{name}: an exempt service must be a one-shot"
            continue
        assert not check.get("disable"), name
        assert isinstance(check["test"], list) and check["test"][0] in ("CMD", "CMD-SHELL"), name
        for key in ("interval", "timeout", "retries", "start_period"):
            assert key in check, f"{name}: healthcheck without {key}"
    for name, service in services.items():
        assert service.get("restart") in ("unless-stopped", "no"), name
        for dependency, spec in (service.get("depends_on") or {}).items():
            assert dependency in services, f"{name} depends on unknown service {dependency}"
            condition = spec["condition"]
            if condition == "service_healthy":
                assert "healthcheck" in services[dependency], f"{name} waits for {dependency}'s health"
            elif condition == "service_started":
                # only nginx: it must pass the service's own "no model yet" 503 on a fresh stack
                assert (name, dependency) == ("serving-proxy", "serving"), f"{name} -> {dependency}"
                assert spec["restart"] is True  # nginx resolves `serving` once: follow a recreate
            else:
                assert condition == "service_completed_successfully", f"{name} -> {dependency}: {condition}"
                assert services[dependency]["restart"] == "no"
    # the order that matters: db, then Dagster's schema, then the code server, then the rest
    assert services["dagster-init"]["depends_on"] == {"db": {"condition": "service_healthy"}}
    for name in ("dagster-daemon", "dagster-webserver"):
        assert services[name]["depends_on"]["dagster-init"]["condition"] == "service_completed_successfully"
        assert services[name]["depends_on"]["user-code"]["condition"] == "service_healthy"
    assert services["user-code"]["depends_on"]["mlflow"]["condition"] == "service_healthy"
    assert services["serving"]["depends_on"]["mlflow"]["condition"] == "service_healthy"
    # The service is healthy when it serves a model (/ready), not merely when it is up (/health).
    serving_check = services["serving"]["healthcheck"]["test"]
    assert "http://127.0.0.1:8000/ready" in serving_check[-1] and "/health" not in serving_check[-1]


def _named_mounts(config: dict, service: str) -> dict[str, str]:
    """target path -> named volume of a service (bind mounts excluded)."""
    out = {}
    for mount in config["services"][service].get("volumes") or []:
        if isinstance(mount, str):
            source, target = mount.split(":")[:2]
        elif mount.get("type") == "volume":
            source, target = mount["source"], mount["target"]
        else:
            continue
        if source in config["volumes"]:
            out[target] = source
    return out


def _dockerfile_env(name: str) -> str:
    text = (REPO / "Dockerfile").read_text()
    match = re.search(rf"\b{name}=(\S+)", text)
    assert match, f"Dockerfile sets no {name}"
    return match.group(1)


def test_named_volumes_persist_all_the_state(config):
    volumes = config["volumes"]
    assert set(volumes) == {"pgdata", "mlflow_artifacts", "grafana_data", "mlops_home", "dagster_storage"}
    assert _named_mounts(config, "db") == {"/var/lib/postgresql/data": "pgdata"}
    mlflow_command = config["services"]["mlflow"]["command"]
    artifacts = mlflow_command[mlflow_command.index("--artifacts-destination") + 1]
    assert _named_mounts(config, "mlflow") == {artifacts: "mlflow_artifacts"}
    assert _named_mounts(config, "grafana") == {"/var/lib/grafana": "grafana_data"}
    # MLOPS_HOME of the code server, where the runs execute (DefaultRunLauncher)
    user_code_env = service_environment(config, "user-code")
    dagster_storage = _dockerfile_env("DAGSTER_HOME") + "/storage"
    assert _named_mounts(config, "user-code") == {
        user_code_env["MLOPS_HOME"]: "mlops_home",
        dagster_storage: "dagster_storage",
    }
    # the webserver reads the run logs the runs write
    assert _named_mounts(config, "dagster-webserver") == {dagster_storage: "dagster_storage"}
    instance = yaml.safe_load((REPO / "dagster.yaml").read_text())
    assert instance["run_launcher"]["class"] == "DefaultRunLauncher"
    assert "compute_logs" not in instance  # default: $DAGSTER_HOME/storage, the shared volume
    # the image creates the mount points owned by its unprivileged user (volumes inherit it)
    dockerfile = (REPO / "Dockerfile").read_text()
    for path in (dagster_storage, user_code_env["MLOPS_HOME"], artifacts):
        assert re.search(rf"chown -R mlops:mlops[^\n]*{re.escape(path)}", dockerfile), path


def documented_ports() -> dict[str, tuple[int, int, str]]:
    """service -> (host port, container port, when it is published) from docs/deployment.md."""
    text = (REPO / "docs" / "deployment.md").read_text()
    assert DOCUMENTED_PORTS_HEADER in text
    table = text.split(DOCUMENTED_PORTS_HEADER, 1)[1].split("\n\n", 1)[0]
    out = {}
    for line in table.strip().splitlines()[1:]:
        cells = [c.strip() for c in line.strip("|").split("|")]
        out[cells[0].strip("`")] = (int(cells[2]), int(cells[3]), cells[4])
    return out


def published_ports(config: dict) -> dict[str, tuple[int, int]]:
    published = {}
    for name, service in config["services"].items():
        for port in service.get("ports") or []:
            address, host, container = port.split(":")
            assert address == "127.0.0.1", f"{name} is published beyond this machine by default"
            published[name] = (int(host), int(container))
    return published


def test_ports_are_the_documented_ones(config):
    published = published_ports(config)
    debug = compose(dotenv(**SECRETS), DEBUG_COMPOSE_FILE)
    by_default = {k: v for k, v in published.items() if "profiles" not in config["services"][k]}
    with_profile = {k: v for k, v in published.items() if "profiles" in config["services"][k]}
    assert by_default == {
        "grafana": (3000, 3000),
        "mlflow": (5000, 5000),
        "dagster-webserver": (3001, 3000),
        "serving-proxy": (8000, 8000),  # nginx: the prediction service's only published port
    }
    assert with_profile == {"adminer": (8080, 8080)}
    assert set(debug["services"]) == {"db"} and published_ports(debug) == {"db": (5432, 5432)}
    documented = documented_ports()
    assert {k: v[:2] for k, v in documented.items()} == {**published, **published_ports(debug)}
    assert {k for k, v in documented.items() if v[2] == "always"} == set(by_default)
    assert documented["adminer"][2] == "`--profile debug`"
    assert documented["db"][2] == "`-f docker-compose.debug.yml`"
    # the alert emails link to the UIs where they are published
    user_code_env = service_environment(config, "user-code")
    assert user_code_env["DAGSTER_UI_URL"] == "http://localhost:3001"
    assert user_code_env["GRAFANA_URL"] == "http://localhost:3000"
    # and BIND_ADDRESS moves them all
    moved = compose(dotenv(**SECRETS, BIND_ADDRESS="0.0.0.0", DAGSTER_HOST_PORT="3301"))
    assert moved["services"]["dagster-webserver"]["ports"] == ["0.0.0.0:3301:3000"]


def test_services_are_wired_together(config):
    services = config["services"]
    user_code = service_environment(config, "user-code")
    assert user_code["METRICS_DATABASE_URL"] == "postgresql+psycopg2://metrics:metrics-secret@db:5432/metrics"
    assert user_code["MLFLOW_TRACKING_URI"] == "http://mlflow:5000"
    assert user_code["SERVING_URL"] == "http://serving:8000"
    serving = service_environment(config, "serving")
    assert serving["SERVING_RELOAD_TOKEN"] == user_code["SERVING_RELOAD_TOKEN"] == "reload-token"
    assert serving["MLFLOW_TRACKING_URI"] == "http://mlflow:5000"
    assert serving["SERVING_HOST"] == "0.0.0.0" and serving["SERVING_PORT"] == "8000"
    assert "serving" in serving["SERVING_ALLOWED_HOSTS"].split(",")
    assert services["serving"]["command"][0] == "gunicorn"
    # MLflow: PostgreSQL backend store through psycopg2, the compose host name accepted
    mlflow_env = service_environment(config, "mlflow")
    assert (
        mlflow_env["MLFLOW_BACKEND_STORE_URI"] == "postgresql+psycopg2://mlflow:mlflow-secret@db:5432/mlflow"
    )
    command = services["mlflow"]["command"]
    allowed = command[command.index("--allowed-hosts") + 1].split(",")
    assert {"mlflow", "mlflow:5000"} <= set(allowed)
    # Every Dagster process reaches the same instance storage, as dagster.yaml asks.
    instance_text = (REPO / "dagster.yaml").read_text()
    needed = set(re.findall(r"\{env: (\w+)\}", instance_text))
    assert needed == {f"DAGSTER_PG_{k}" for k in ("USERNAME", "PASSWORD", "HOST", "DB", "PORT")}
    for name in DAGSTER_SERVICES:
        env = service_environment(config, name)
        assert {k: env[k] for k in needed} == {
            "DAGSTER_PG_USERNAME": "dagster",
            "DAGSTER_PG_PASSWORD": "dagster-secret",
            "DAGSTER_PG_HOST": "db",
            "DAGSTER_PG_DB": "dagster",
            "DAGSTER_PG_PORT": "5432",
        }, name
    # The webserver and daemon load the code location the code server serves.
    workspace = yaml.safe_load((REPO / "workspace.docker.yaml").read_text())
    (entry,) = workspace["load_from"]
    grpc = entry["grpc_server"]
    code_server = services["user-code"]["command"]
    assert code_server[:3] == ["dagster", "code-server", "start"]
    assert grpc["host"] == "user-code"
    assert str(grpc["port"]) == code_server[code_server.index("-p") + 1]
    assert grpc["location_name"] == code_server[code_server.index("--location-name") + 1] == "mlops_assets"
    assert code_server[code_server.index("-m") + 1] == "mlops_assets.definitions"
    assert "COPY workspace.docker.yaml /opt/dagster/app/workspace.yaml" in (REPO / "Dockerfile").read_text()
    for name in ("dagster-daemon", "dagster-webserver"):
        assert "/opt/dagster/app/workspace.yaml" in services[name]["command"]
    # nginx passes everything to gunicorn, on the port gunicorn listens on.
    proxy = services["serving-proxy"]
    conf = bind_source(config, "serving-proxy", "/etc/nginx/conf.d/default.conf").read_text()
    assert "./config/nginx/serving.conf:/etc/nginx/conf.d/default.conf:ro" in proxy["volumes"]
    assert re.search(r"upstream serving \{\s*(#[^\n]*\n\s*)*server serving:8000;", conf)
    assert re.search(r"location / \{\s*proxy_pass http://serving;", conf)
    assert re.search(r"^\s*listen 8000;", conf, re.M)
    assert proxy["ports"][0].endswith(":8000")
    assert proxy["image"].startswith("nginx:")
    assert "serving" in serving["SERVING_ALLOWED_HOSTS"].split(",")  # user-code's /reload, direct


def _network_members(config: dict) -> dict[str, set[str]]:
    members = {name: set() for name in config["networks"]}
    for name, service in config["services"].items():
        for network in service["networks"]:
            members[network].add(name)
    return members


def test_networks_keep_the_code_server_away_from_grafana_and_adminer(config):
    services = config["services"]
    for name, service in services.items():
        assert isinstance(service.get("networks"), list) and service["networks"], f"{name}: no networks"
        assert set(service["networks"]) <= set(config["networks"]), name
    members = _network_members(config)
    assert members == {
        "data": {"db", "dagster-init", "user-code", "dagster-daemon", "dagster-webserver", "mlflow"},
        "reporting": {"db", "grafana", "adminer"},
        "dagster": {"user-code", "dagster-daemon", "dagster-webserver"},
        "registry": {"mlflow", "user-code", "serving"},
        "edge": {"serving-proxy", "serving"},
    }

    def share(a: str, b: str) -> bool:
        return bool(set(services[a]["networks"]) & set(services[b]["networks"]))

    # Who talks to whom: each of these pairs has a network in common...
    talks = [
        *[(client, "db") for client in (*DAGSTER_SERVICES, "mlflow", "grafana", "adminer")],
        ("dagster-daemon", "user-code"),  # gRPC: sensors, schedules, runs
        ("dagster-webserver", "user-code"),
        ("user-code", "mlflow"),  # registering, loading, the champion alias
        ("serving", "mlflow"),
        ("user-code", "serving"),  # POST /reload after a promotion
        ("serving-proxy", "serving"),
    ]
    for client, server in talks:
        assert share(client, server), f"{client} cannot reach {server}"
    # ...and these pairs have none: the code server (gRPC, no authentication) is out of reach of
    # the UIs people log into, nginx reaches gunicorn only, the service reaches no database.
    for other in ("grafana", "adminer", "serving-proxy"):
        assert not share("user-code", other), f"user-code shares a network with {other}"
    for other in set(services) - {"serving-proxy", "serving"}:
        assert not share("serving-proxy", other), f"nginx shares a network with {other}"
    assert not share("serving", "db")
    assert not share("dagster-webserver", "grafana") and not share("dagster-webserver", "adminer")


def _bytes(size) -> int:
    match = re.fullmatch(r"(\d+(?:\.\d+)?)([kmg]?)b?", str(size).strip().lower())
    assert match, f"cannot read the size {size!r}"
    return int(float(match.group(1)) * 1024 ** " kmg".index(match.group(2) or " "))


def test_every_service_has_memory_and_cpu_limits_that_fit_the_machine(config):
    """Sized for a 2-core, 24 GiB machine (the compose file's header says how)."""
    memory = {}
    for name, service in config["services"].items():
        assert "mem_limit" in service and "cpus" in service, f"{name} has no memory or CPU limit"
        memory[name] = _bytes(service["mem_limit"])
        cpus = float(service["cpus"])
        assert 0 < cpus <= 2, f"{name}: cpus {cpus} (Docker refuses more than the machine's cores)"
        assert memory[name] >= 128 * 2**20, f"{name}: {service['mem_limit']} is too little to start"
    # all of them together (debug ones included) leave a quarter of the memory to the OS
    assert sum(memory.values()) <= 18 * 2**30, sum(memory.values()) / 2**30
    # the runs execute in the code server: it gets the most
    assert max(memory, key=memory.get) == "user-code"
    # MLflow's job runner (8 more processes, ~1.1 GiB, for GenAI jobs this project has none
    # of) is off, so the server fits its limit
    assert service_environment(config, "mlflow")["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] == "false"


def test_debugging_tools_are_not_in_the_production_stack(config):
    services = config["services"]
    profiled = {name for name, service in services.items() if service.get("profiles")}
    assert profiled == {"adminer"}
    assert services["adminer"]["profiles"] == ["debug"]
    assert "ports" not in services["db"]  # published by docker-compose.debug.yml only
    assert not any(
        dep in profiled for service in services.values() for dep in (service.get("depends_on") or {})
    ), "a production service depends on a debug-only one"
    debug = raw_compose(DEBUG_COMPOSE_FILE)
    assert set(debug) == {"services"} and set(debug["services"]) == {"db"}
    assert set(debug["services"]["db"]) == {"ports"}


def test_mlflow_requires_a_login_and_every_client_has_it(config):
    services = config["services"]
    command = services["mlflow"]["command"]
    assert command[command.index("--app-name") + 1] == "basic-auth"
    env = service_environment(config, "mlflow")
    assert env["MLFLOW_AUTH_ADMIN_USERNAME"] == "admin"
    assert env["MLFLOW_AUTH_ADMIN_PASSWORD"] == SECRETS["MLFLOW_ADMIN_PASSWORD"]
    assert env["MLFLOW_FLASK_SERVER_SECRET_KEY"] == SECRETS["MLFLOW_FLASK_SERVER_SECRET_KEY"]
    ini = bind_source(config, "mlflow", env["MLFLOW_AUTH_CONFIG_PATH"])
    assert (
        f"./config/mlflow/basic_auth.ini:{env['MLFLOW_AUTH_CONFIG_PATH']}:ro" in services["mlflow"]["volumes"]
    )
    import configparser

    auth = configparser.ConfigParser()
    auth.read(ini)
    # users and permissions in the mlflow database, as the mlflow role, through libpq's PG*
    assert auth["mlflow"]["database_uri"] == "postgresql+psycopg2://"
    assert {k: env[k] for k in ("PGHOST", "PGPORT", "PGDATABASE", "PGUSER", "PGPASSWORD")} == {
        "PGHOST": "db",
        "PGPORT": "5432",
        "PGDATABASE": "mlflow",
        "PGUSER": "mlflow",
        "PGPASSWORD": SECRETS["MLFLOW_DB_PASSWORD"],
    }
    assert auth["mlflow"]["default_permission"] in ("READ", "NO_PERMISSIONS")
    # Every process that talks to MLflow logs in (runs are subprocesses of user-code).
    clients = {
        name
        for name in services
        if service_environment(config, name).get("MLFLOW_TRACKING_URI", "").startswith("http://mlflow:")
    }
    assert clients == {"user-code", "serving"}
    for name in clients:
        client_env = service_environment(config, name)
        assert client_env["MLFLOW_TRACKING_USERNAME"] == env["MLFLOW_AUTH_ADMIN_USERNAME"], name
        assert client_env["MLFLOW_TRACKING_PASSWORD"] == env["MLFLOW_AUTH_ADMIN_PASSWORD"], name


def test_trip_data_is_an_optional_read_only_mount():
    def user_code(env):
        service = compose(env)["services"]["user-code"]
        (mount,) = [v for v in service["volumes"] if isinstance(v, dict)]
        return service["environment"]["TRIP_DATA_DIR"], mount

    value, mount = user_code(dotenv(**SECRETS))  # .env.example leaves it empty: downloads
    assert value == ""
    assert mount["read_only"] is True and mount["target"] == "/data/tlc"
    assert (REPO / mount["source"]).is_dir()  # the empty placeholder exists
    value, mount = user_code(dotenv(**SECRETS, TRIP_DATA_DIR="/srv/tlc"))
    assert value == "/data/tlc" == mount["target"]
    assert mount["source"] == "/srv/tlc" and mount["read_only"] is True


def test_the_image_is_slim_unprivileged_and_installs_the_locked_runtime_only():
    dockerfile = (REPO / "Dockerfile").read_text()
    assert "ARG PYTHON_IMAGE=python:3.11-slim" in dockerfile
    assert dockerfile.count("FROM ${PYTHON_IMAGE}") == 2  # build stage + runtime stage
    assert 'pip install -c requirements.lock ".${PROJECT_EXTRAS}"' in dockerfile
    assert 'ARG PROJECT_EXTRAS=""' in dockerfile  # compose builds the runtime alone...
    instructions = "\n".join(line for line in dockerfile.splitlines() if not line.startswith("#"))
    assert "[dev]" not in instructions  # ...never the dev extra (k8s only when asked for)
    users = re.findall(r"^USER (\S+)", dockerfile, re.M)
    assert users and users[-1] not in ("root", "0")
    # Every COPY source exists and is not excluded by .dockerignore.
    ignored = [
        line.strip()
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    for pattern in (".venv", ".mlops", ".env", ".git", "mlops_assets_tests"):
        assert pattern in ignored
    for line in re.findall(r"^COPY (?!--from)(.+)$", dockerfile, re.M):
        for source in shlex.split(line)[:-1]:
            assert (REPO / source).exists(), source
            excluded = [p for p in ignored if source == p or source.startswith(p.rstrip("/") + "/")]
            assert not excluded, f"{source} is copied but .dockerignore excludes it ({excluded})"
    # Python-based healthchecks: the slim image has no curl; its python has urllib.
    config = compose(dotenv(**SECRETS))
    for name in ("mlflow", "dagster-webserver", "serving"):
        check = config["services"][name]["healthcheck"]["test"]
        assert check[:3] == ["CMD", "python", "-c"], name
