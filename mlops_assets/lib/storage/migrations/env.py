"""Alembic's environment for the metrics DB: runs on the connection ``migrate`` hands over
(``config.attributes["connection"]``), or on ``-x url=...`` from the ``alembic`` command."""

import sqlalchemy as sa
from alembic import context

from mlops_assets.lib.storage.migrate import VERSION_TABLE

config = context.config


def on_version_apply(*, ctx, step, heads, run_args):
    revision = step.up_revision
    if revision is not None and step.is_upgrade and not revision.revision.startswith("0001"):
        doc = (revision.doc or "").splitlines()[0] if revision.doc else ""
        config.attributes["changes"].append(f"applied revision {revision.revision}: {doc}".rstrip(": "))


def run(connection: sa.Connection) -> None:
    context.configure(
        connection=connection,
        version_table=VERSION_TABLE,
        on_version_apply=on_version_apply,
    )
    with context.begin_transaction():
        context.run_migrations()


connection = config.attributes.get("connection")
if connection is not None:
    run(connection)
else:
    url = context.get_x_argument(as_dictionary=True).get("url")
    if not url:
        raise SystemExit("alembic: pass the metrics DB URL as -x url=<METRICS_DATABASE_URL>")
    config.attributes.setdefault("changes", [])
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        run(conn)
    engine.dispose()
