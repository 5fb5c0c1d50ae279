#!/usr/bin/env bash
# The stack's databases and roles on its one PostgreSQL server, one database per component:
#
#   METRICS_DB     (default metrics)  dummy_metrics, model_timeline, drift_alerts; owner METRICS_DB_USER
#   DAGSTER_PG_DB  (default dagster)  Dagster run/event-log/schedule storage; owner DAGSTER_PG_USERNAME
#   MLFLOW_DB      (default mlflow)   MLflow tracking + model registry; owner MLFLOW_DB_USER
#
# plus GRAFANA_DB_USER, a read-only role on METRICS_DB (Grafana runs whatever SQL a dashboard
# holds, so its user gets SELECT and nothing else, as Grafana's documentation advises).
# Each owner can connect to its own database only (CONNECT is revoked from PUBLIC).
#
# The postgres image runs this once, from /docker-entrypoint-initdb.d, when the data volume is
# empty. It is idempotent (existing roles and databases are left alone), so it can also be run
# by hand against an existing server: `docker compose exec db bash /docker-entrypoint-initdb.d/10-init-databases.sh`.
# Tables are not created here: each component creates and migrates its own (dagster instance
# migrate, mlflow's alembic migrations, the metrics DB's ensure_schema).
set -euo pipefail

METRICS_DB="${METRICS_DB:-metrics}"
METRICS_DB_USER="${METRICS_DB_USER:-metrics}"
DAGSTER_PG_DB="${DAGSTER_PG_DB:-dagster}"
DAGSTER_PG_USERNAME="${DAGSTER_PG_USERNAME:-dagster}"
MLFLOW_DB="${MLFLOW_DB:-mlflow}"
MLFLOW_DB_USER="${MLFLOW_DB_USER:-mlflow}"
GRAFANA_DB_USER="${GRAFANA_DB_USER:-grafana_reader}"

for name in METRICS_DB_PASSWORD DAGSTER_PG_PASSWORD MLFLOW_DB_PASSWORD GRAFANA_DB_PASSWORD; do
  if [ -z "${!name:-}" ]; then
    echo "init-databases: $name is not set (see .env.example)" >&2
    exit 1
  fi
done

psql_admin() {
  psql -v ON_ERROR_STOP=1 --no-psqlrc --quiet --username "${POSTGRES_USER:-postgres}" "$@"
}

echo "init-databases: roles and databases $METRICS_DB, $DAGSTER_PG_DB, $MLFLOW_DB"
# psql variables (:'name' literal, :"name" identifier) keep names and passwords out of the SQL
# text, so any character is safe; \gexec runs the statements the SELECTs build.
psql_admin --dbname postgres \
  -v metrics_db="$METRICS_DB" -v metrics_user="$METRICS_DB_USER" -v metrics_password="$METRICS_DB_PASSWORD" \
  -v dagster_db="$DAGSTER_PG_DB" -v dagster_user="$DAGSTER_PG_USERNAME" -v dagster_password="$DAGSTER_PG_PASSWORD" \
  -v mlflow_db="$MLFLOW_DB" -v mlflow_user="$MLFLOW_DB_USER" -v mlflow_password="$MLFLOW_DB_PASSWORD" \
  -v grafana_user="$GRAFANA_DB_USER" -v grafana_password="$GRAFANA_DB_PASSWORD" <<'SQL'
SELECT format('CREATE ROLE %I LOGIN PASSWORD %L', r.name, r.password)
FROM (VALUES (:'metrics_user', :'metrics_password'),
             (:'dagster_user', :'dagster_password'),
             (:'mlflow_user', :'mlflow_password'),
             (:'grafana_user', :'grafana_password')) AS r(name, password)
WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = r.name) \gexec

SELECT format('CREATE DATABASE %I OWNER %I', d.name, d.owner)
FROM (VALUES (:'metrics_db', :'metrics_user'),
             (:'dagster_db', :'dagster_user'),
             (:'mlflow_db', :'mlflow_user')) AS d(name, owner)
WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = d.name) \gexec

REVOKE ALL ON DATABASE :"metrics_db" FROM PUBLIC;
REVOKE ALL ON DATABASE :"dagster_db" FROM PUBLIC;
REVOKE ALL ON DATABASE :"mlflow_db" FROM PUBLIC;
GRANT CONNECT ON DATABASE :"metrics_db" TO :"grafana_user";
SQL

# Grafana reads the metrics tables, including those the metrics role creates later.
psql_admin --dbname "$METRICS_DB" -v metrics_user="$METRICS_DB_USER" -v grafana_user="$GRAFANA_DB_USER" <<'SQL'
GRANT USAGE ON SCHEMA public TO :"grafana_user";
GRANT SELECT ON ALL TABLES IN SCHEMA public TO :"grafana_user";
ALTER DEFAULT PRIVILEGES FOR ROLE :"metrics_user" IN SCHEMA public GRANT SELECT ON TABLES TO :"grafana_user";
SQL
echo "init-databases: done"
