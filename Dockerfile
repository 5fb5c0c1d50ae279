# syntax=docker/dockerfile:1
# The project image: one image for every service of docker-compose.yml that runs project code
# or the pinned Python tools (the Dagster code server and its runs, the Dagster webserver and
# daemon, the MLflow tracking server, the prediction service). One image means one set of
# pinned versions: the webserver, daemon and code server speak the same Dagster release, and
# the MLflow server and its clients the same MLflow release.
#
#   docker build -t mlops-assets:local .
#
# Runtime dependencies only (no `[dev]` extra), pinned by requirements.lock used as a
# constraints file, exactly as `make install` does. Every dependency ships wheels for CPython
# 3.11 on linux x86_64 and aarch64, so the slim image needs no compiler.

ARG PYTHON_IMAGE=python:3.11-slim

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
# Dependencies first (a layer that survives code changes), then the project itself.
COPY pyproject.toml requirements.lock ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
        > /tmp/requirements.txt \
    && pip install -c requirements.lock -r /tmp/requirements.txt
COPY README.md ./
COPY mlops_assets ./mlops_assets
COPY mlops_core ./mlops_core
COPY serving ./serving
# PROJECT_EXTRAS='[k8s]' adds the Kubernetes run launcher's packages (docs/scale-out.md).
ARG PROJECT_EXTRAS=""
RUN pip install -c requirements.lock ".${PROJECT_EXTRAS}" \
    && pip check

FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="mlops_assets" \
      org.opencontainers.image.description="NYC taxi trip duration: Dagster assets, MLflow registry, prediction service" \
      org.opencontainers.image.licenses="MIT"

# A fixed, unprivileged user: named volumes are initialised with the ownership of the
# directories created below, so the containers never need root.
ARG APP_UID=10001
RUN groupadd --system --gid ${APP_UID} mlops \
    && useradd --system --uid ${APP_UID} --gid mlops --home-dir /home/mlops --create-home --shell /usr/sbin/nologin mlops

COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    DAGSTER_HOME=/opt/dagster/dagster_home \
    MLOPS_HOME=/var/lib/mlops \
    MPLCONFIGDIR=/tmp/matplotlib

# DAGSTER_HOME holds the instance config (storage in PostgreSQL, settings from DAGSTER_PG_*);
# its storage/ folder (compute logs, the default IO manager) is a volume shared by the
# webserver, the daemon and the code server. MLOPS_HOME (caches, asset files, model bundles,
# reports, outbox) is a volume of the code server, where runs execute.
COPY dagster.yaml /opt/dagster/dagster_home/dagster.yaml
COPY workspace.docker.yaml /opt/dagster/app/workspace.yaml
COPY serving/gunicorn.conf.py /opt/dagster/app/gunicorn.conf.py
# DAGSTER_HOME itself is writable too (Dagster may keep small files there); dagster.yaml stays root's.
RUN mkdir -p /opt/dagster/dagster_home/storage /var/lib/mlops /mlartifacts \
    && chown mlops:mlops /opt/dagster/dagster_home \
    && chown -R mlops:mlops /opt/dagster/dagster_home/storage /var/lib/mlops /mlartifacts

WORKDIR /opt/dagster/app
USER mlops
EXPOSE 3000 4000 5000 8000
# Each compose service sets its own command; alone, the image serves the code location.
CMD ["dagster", "code-server", "start", "-h", "0.0.0.0", "-p", "4000", "-m", "mlops_assets.definitions", "--location-name", "mlops_assets"]
