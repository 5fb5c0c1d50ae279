"""Helpers for the stack tests: the compose file read as Docker Compose reads it, the stack's
databases made by the real init script, and Grafana's SQL macros expanded as Grafana does.

Nothing here replaces a component: the compose file's commands and healthchecks are run as
real processes by the tests, only with loopback addresses and temporary paths where the
containers have service names and volumes.
"""

from __future__ import annotations

import os
import re
import subprocess
import uuid
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import sqlalchemy as sa
import yaml

REPO = Path(__file__).resolve().parents[2]
COMPOSE_FILE = REPO / "docker-compose.yml"
# What `-f docker-compose.yml -f docker-compose.debug.yml` adds: PostgreSQL's published port.
DEBUG_COMPOSE_FILE = REPO / "docker-compose.debug.yml"
ENV_EXAMPLE = REPO / ".env.example"
INIT_SCRIPT = REPO / "config" / "postgres" / "init-databases.sh"
# The REQUIRED values of .env.example, as a user fills them in (distinct, so each is traceable).
SECRETS = {
    "POSTGRES_PASSWORD": "pg-admin-secret",
    "METRICS_DB_PASSWORD": "metrics-secret",
    "DAGSTER_PG_PASSWORD": "dagster-secret",
    "MLFLOW_DB_PASSWORD": "mlflow-secret",
    "GRAFANA_DB_PASSWORD": "grafana-secret",
    "GRAFANA_ADMIN_PASSWORD": "grafana-admin-secret",
    "SERVING_RELOAD_TOKEN": "reload-token",
    "DJANGO_SECRET_KEY": "django-secret",
    "MLFLOW_ADMIN_PASSWORD": "mlflow-admin-secret",  # MLflow wants at least 12 characters
    "MLFLOW_FLASK_SERVER_SECRET_KEY": "mlflow-flask-secret",
}
PG_HOST = "127.0.0.1"
PG_PORT = 5432


# --- docker-compose.yml -----------------------------------------------------------------------
# Compose interpolation: $$ (a literal $), $NAME, ${NAME}, ${NAME:-default}, ${NAME-default},
# ${NAME:?error}, ${NAME?error}, ${NAME:+replacement}, ${NAME+replacement}.
_VAR = re.compile(
    r"\$(?:(?P<escaped>\$)|\{(?P<braced>[^}]*)\}|(?P<named>[A-Za-z_][A-Za-z0-9_]*))",
)
_BRACED = re.compile(r"^(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:-|-|:\?|\?|:\+|\+)(?P<arg>.*))?$", re.S)


class MissingVariable(ValueError):
    pass


def variables_used(text: str) -> set[str]:
    """Every variable the compose file interpolates (``$$`` escapes are not variables)."""
    names = set()
    for match in _VAR.finditer(text):
        if match.group("escaped"):
            continue
        if match.group("named"):
            names.add(match.group("named"))
            continue
        parsed = _BRACED.match(match.group("braced"))
        if parsed is None:
            raise ValueError(f"unsupported interpolation ${{{match.group('braced')}}}")
        names.add(parsed.group("name"))
    return names


def interpolate(value: str, env: dict[str, str]) -> str:
    def replace(match: re.Match) -> str:
        if match.group("escaped"):
            return "$"
        if match.group("named"):
            return env.get(match.group("named"), "")
        parsed = _BRACED.match(match.group("braced"))
        name, op, arg = parsed.group("name"), parsed.group("op"), parsed.group("arg") or ""
        current = env.get(name)
        if op is None:
            return current or ""
        if op == ":-":
            return current if current else arg
        if op == "-":
            return current if current is not None else arg
        if op in (":?", "?"):
            if current is None or (op == ":?" and current == ""):
                raise MissingVariable(f"{name}: {arg}")
            return current
        if op == ":+":
            return arg if current else ""
        return arg if current is not None else ""  # "+"

    return _VAR.sub(replace, value)


def _walk(node, env):
    if isinstance(node, str):
        return interpolate(node, env)
    if isinstance(node, list):
        return [_walk(item, env) for item in node]
    if isinstance(node, dict):
        return {key: _walk(value, env) for key, value in node.items()}
    return node


def raw_compose(path: Path = COMPOSE_FILE) -> dict:
    return yaml.safe_load(path.read_text())


def compose_strings(path: Path = COMPOSE_FILE) -> str:
    """Every string value of a compose file, one per line (comments are not interpolated)."""
    out = []

    def walk(node):
        if isinstance(node, str):
            out.append(node)
        elif isinstance(node, list):
            for item in node:
                walk(item)
        elif isinstance(node, dict):
            for value in node.values():
                walk(value)

    walk(raw_compose(path))
    return "\n".join(out)


def compose(env: dict[str, str], path: Path = COMPOSE_FILE) -> dict:
    """docker-compose.yml (or another compose file) as Compose sees it with ``env`` as .env."""
    return _walk(raw_compose(path), env)


def env_example() -> dict[str, str]:
    """The variables .env.example documents, with the values it gives them."""
    out = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        match = re.match(r"^#?\s*([A-Z][A-Z0-9_]*)=(.*)$", line)
        if match:
            out[match.group(1)] = match.group(2)
    return out


def service_environment(config: dict, service: str) -> dict[str, str]:
    env = config["services"][service].get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {key: "" if value is None else str(value) for key, value in env.items()}


def bind_source(config: dict, service: str, target: str) -> Path:
    """The repository file a service bind-mounts at ``target`` (``./path:target[:ro]``)."""
    for mount in config["services"][service].get("volumes") or []:
        if isinstance(mount, str) and mount.startswith("./") and mount.split(":")[1] == target:
            return REPO / mount.split(":")[0]
    raise AssertionError(f"{service} mounts no repository file at {target}")


def run_python_healthcheck(test: list[str], replace: tuple[str, str], env: dict | None = None) -> bool:
    """A compose healthcheck of the form ``["CMD", "python", "-c", code]``, run here with this
    interpreter, the container's address replaced (``replace`` = (old, new))."""
    import sys

    assert test[:3] == ["CMD", "python", "-c"], test
    assert replace[0] in test[3], f"{replace[0]} is not in the healthcheck {test[3]}"
    code = test[3].replace(*replace)
    return (
        subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=30, env=env).returncode == 0
    )


def dotenv(**secrets: str) -> dict[str, str]:
    """.env.example with the REQUIRED values filled in, as a user's .env would be."""
    env = env_example()
    for name, value in env.items():
        if value == "":
            env[name] = secrets.get(name, "")
    env.update(secrets)
    return env


# --- the stack's databases ------------------------------------------------------------------
@dataclass
class StackDatabases:
    """Databases and roles made by config/postgres/init-databases.sh, with unique names."""

    names: dict[str, str]
    host: str = PG_HOST
    port: int = PG_PORT

    def url(self, db: str, user: str) -> str:
        return sa.URL.create(
            "postgresql+psycopg2",
            username=self.names[user],
            host=self.host,
            port=self.port,
            database=self.names[db],
        ).render_as_string(hide_password=False)

    @property
    def metrics_url(self) -> str:
        return self.url("METRICS_DB", "METRICS_DB_USER")

    @property
    def grafana_url(self) -> str:
        return self.url("METRICS_DB", "GRAFANA_DB_USER")

    @property
    def mlflow_url(self) -> str:
        return self.url("MLFLOW_DB", "MLFLOW_DB_USER")

    def dagster_env(self) -> dict[str, str]:
        """DAGSTER_PG_* for dagster.yaml (the test server trusts loopback: the password is "")."""
        return {
            "DAGSTER_PG_HOST": self.host,
            "DAGSTER_PG_PORT": str(self.port),
            "DAGSTER_PG_DB": self.names["DAGSTER_PG_DB"],
            "DAGSTER_PG_USERNAME": self.names["DAGSTER_PG_USERNAME"],
            "DAGSTER_PG_PASSWORD": "",
        }


def init_stack_databases(admin_url: str) -> StackDatabases:
    """Run the real init script (as the postgres image does) with unique database/role names."""
    prefix = f"mlops_stack_{uuid.uuid4().hex[:10]}"
    names = {
        "METRICS_DB": f"{prefix}_metrics",
        "METRICS_DB_USER": f"{prefix}_metrics",
        "DAGSTER_PG_DB": f"{prefix}_dagster",
        "DAGSTER_PG_USERNAME": f"{prefix}_dagster",
        "MLFLOW_DB": f"{prefix}_mlflow",
        "MLFLOW_DB_USER": f"{prefix}_mlflow",
        "GRAFANA_DB_USER": f"{prefix}_grafana",
    }
    # Passwords are set on the roles (the server trusts loopback, so they are not checked here).
    passwords = {
        "METRICS_DB_PASSWORD": uuid.uuid4().hex,
        "DAGSTER_PG_PASSWORD": uuid.uuid4().hex,
        "MLFLOW_DB_PASSWORD": uuid.uuid4().hex,
        "GRAFANA_DB_PASSWORD": "it's a 'quoted' pässword",  # any character must be safe
    }
    admin = sa.make_url(admin_url)
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("PG")},
        **names,
        **passwords,
        "POSTGRES_USER": admin.username or "postgres",
        "PGHOST": admin.host or PG_HOST,
        "PGPORT": str(admin.port or PG_PORT),
    }
    if admin.password:
        env["PGPASSWORD"] = admin.password
    out = subprocess.run(
        ["bash", str(INIT_SCRIPT)], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    databases = StackDatabases(names=names, host=admin.host or PG_HOST, port=admin.port or PG_PORT)
    if out.returncode != 0:
        drop_stack_databases(admin_url, databases)
        raise RuntimeError(f"init-databases.sh failed ({out.returncode}): {out.stderr}")
    return databases


def drop_stack_databases(admin_url: str, databases: StackDatabases) -> None:
    engine = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        for key in ("METRICS_DB", "DAGSTER_PG_DB", "MLFLOW_DB"):
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{databases.names[key]}" WITH (FORCE)'))
        for key in ("GRAFANA_DB_USER", "METRICS_DB_USER", "DAGSTER_PG_USERNAME", "MLFLOW_DB_USER"):
            conn.execute(sa.text(f'DROP ROLE IF EXISTS "{databases.names[key]}"'))
    engine.dispose()


# --- Grafana's PostgreSQL datasource -------------------------------------------------------
# What Grafana does with a panel's rawSql before it reaches PostgreSQL: the frontend replaces
# dashboard variables ($model, ${model}, [[model]]); the backend replaces the global macros
# ($__interval, $__unixEpochFrom() ...) and then the PostgreSQL macros, with the same output
# as pkg/tsdb/grafana-postgresql-datasource/macros.go (timestamps in RFC 3339, UTC).
_MACRO = re.compile(r"\$([_a-zA-Z0-9]+)\(([^)]*)\)")


def _rfc3339(moment: datetime) -> str:
    text = moment.strftime("%Y-%m-%dT%H:%M:%S")
    if moment.microsecond:
        text += f".{moment.microsecond:06d}".rstrip("0")
    return text + "Z"


def _interval_seconds(text: str) -> int:
    match = re.fullmatch(r"(\d+)(ms|s|m|h|d|w|y)", text.strip().strip("'"))
    if not match:
        raise ValueError(f"cannot parse interval {text!r}")
    value, unit = int(match.group(1)), match.group(2)
    return value * {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}[unit]


def _format_interval(seconds: int) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def expand_variables(sql: str, variables: dict[str, str | list[str]], multi: frozenset = frozenset()) -> str:
    """Dashboard variables as Grafana's SQL datasources interpolate them: a single value raw
    (quotes doubled), a multi-value variable as a comma-separated list of quoted literals."""

    def render(name: str) -> str:
        value = variables[name]
        if isinstance(value, list) or name in multi:
            values = value if isinstance(value, list) else [value]
            return ",".join("'" + v.replace("'", "''") + "'" for v in values)
        return value.replace("'", "''")

    for name in sorted(variables, key=len, reverse=True):
        sql = sql.replace("${" + name + "}", render(name)).replace("[[" + name + "]]", render(name))
        sql = re.sub(r"\$" + re.escape(name) + r"(?![A-Za-z0-9_])", lambda _m, n=name: render(n), sql)
    return sql


def expand_macros(sql: str, time_from: datetime, time_to: datetime, interval_seconds: int = 86400) -> str:
    """Grafana's global and PostgreSQL macros for the time range [time_from, time_to] (UTC)."""
    sql = sql.replace("$__interval_ms", str(interval_seconds * 1000))
    sql = sql.replace("$__interval", _format_interval(interval_seconds))
    sql = sql.replace("$__unixEpochFrom()", str(int(time_from.timestamp())))
    sql = sql.replace("$__unixEpochTo()", str(int(time_to.timestamp())))
    start, end = _rfc3339(time_from), _rfc3339(time_to)

    def evaluate(match: re.Match) -> str:
        name = match.group(1)
        args = [a.strip() for a in match.group(2).split(",")]
        if name == "__time":
            return f'{args[0]} AS "time"'
        if name == "__timeEpoch":
            return f'extract(epoch from {args[0]}) as "time"'
        if name == "__timeFilter":
            return f"{args[0]} BETWEEN '{start}' AND '{end}'"
        if name == "__timeFrom":
            return f"'{start}'"
        if name == "__timeTo":
            return f"'{end}'"
        if name in ("__timeGroup", "__timeGroupAlias"):
            seconds = _interval_seconds(args[1])
            group = f"floor(extract(epoch from {args[0]})/{seconds})*{seconds}"
            return group + (' AS "time"' if name == "__timeGroupAlias" else "")
        if name == "__unixEpochFilter":
            return f"{args[0]} >= {int(time_from.timestamp())} AND {args[0]} <= {int(time_to.timestamp())}"
        raise ValueError(f"unknown macro ${name}")

    expanded = _MACRO.sub(evaluate, sql)
    if "$__" in expanded:
        raise ValueError(f"unexpanded macro left in: {expanded}")
    return expanded


def grafana_sql(
    sql: str,
    variables: dict[str, str],
    time_from: datetime,
    time_to: datetime,
    multi: frozenset = frozenset(),
) -> str:
    expanded = expand_macros(expand_variables(sql, variables, multi), time_from, time_to)
    if re.search(r"\$\{?[A-Za-z_]", expanded) or "[[" in expanded:
        raise ValueError(f"a dashboard variable was left in: {expanded}")
    return expanded


# --- the compose `mlflow` service on loopback ------------------------------------------------
def mlflow_server(
    config: dict, databases: StackDatabases, port: int, artifacts: Path
) -> tuple[list[str], dict]:
    """The `mlflow` service's command and environment from ``config``, on 127.0.0.1:``port``
    with one worker, its backend store and its users (MLflow's authentication) in the MLflow
    database that ``databases`` made, artifacts in ``artifacts``, the repository's
    basic_auth.ini. Returns (command, environment)."""
    import sys

    service = config["services"]["mlflow"]
    cmd = list(service["command"])
    assert cmd[:2] == ["mlflow", "server"]
    cmd[cmd.index("--host") + 1] = "127.0.0.1"
    cmd[cmd.index("--port") + 1] = str(port)
    cmd[cmd.index("--workers") + 1] = "1"
    cmd[cmd.index("--artifacts-destination") + 1] = str(artifacts)
    env = service_environment(config, "mlflow")
    assert set(env) == {
        "MLFLOW_BACKEND_STORE_URI",
        "MLFLOW_AUTH_CONFIG_PATH",
        "MLFLOW_AUTH_ADMIN_USERNAME",
        "MLFLOW_AUTH_ADMIN_PASSWORD",
        "MLFLOW_FLASK_SERVER_SECRET_KEY",
        "MLFLOW_SERVER_ENABLE_JOB_EXECUTION",
        "PGHOST",
        "PGPORT",
        "PGDATABASE",
        "PGUSER",
        "PGPASSWORD",
    }, sorted(env)
    env.update(
        {
            "MLFLOW_BACKEND_STORE_URI": databases.mlflow_url,
            "MLFLOW_AUTH_CONFIG_PATH": str(bind_source(config, "mlflow", env["MLFLOW_AUTH_CONFIG_PATH"])),
            "PGHOST": databases.host,
            "PGPORT": str(databases.port),
            "PGDATABASE": databases.names["MLFLOW_DB"],
            "PGUSER": databases.names["MLFLOW_DB_USER"],
            "PGPASSWORD": "",  # the test server trusts loopback
        }
    )
    inherited = {k: v for k, v in os.environ.items() if not k.startswith(("PG", "MLFLOW_"))}
    return [str(Path(sys.executable).parent / "mlflow"), *cmd[1:]], {**inherited, **env}


# --- real processes on free ports ---------------------------------------------------------
def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_listening(build, *, cwd, log_path: Path, ready, what: str, attempts: int = 3, timeout: float = 180):
    """Start a server on a free port and wait until ``ready(port)``; returns (process, port).

    ``build(port)`` gives the command and environment. A free port can be taken by another
    process (a client's ephemeral port, another test) between choosing it and binding it: when
    the server exits saying its address is in use, it is started again on another port.
    """
    from bench.support import start_process, stop_process, wait_for

    for _ in range(attempts):
        port = free_port()
        cmd, env = build(port)
        proc = start_process(cmd, cwd=cwd, log_path=log_path, env=env)

        def state(proc=proc, port=port):
            if proc.poll() is not None:
                return "exited"
            return "ready" if ready(port) else None

        try:
            outcome = wait_for(state, timeout=timeout, interval=1, what=what)
        except BaseException:
            stop_process(proc)
            raise
        if outcome == "ready":
            return proc, port
        stop_process(proc)
        log = Path(log_path).read_text(errors="replace")
        if "in use" not in log.lower():
            raise RuntimeError(f"{what}: the process exited:\n{log[-4000:]}")
    raise RuntimeError(f"{what}: no free port after {attempts} attempts")
