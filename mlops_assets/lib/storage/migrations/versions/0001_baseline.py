"""Baseline: dummy_metrics, model_timeline and alerts as the last release without Alembic
made them.

An empty database gets the three tables. A database an earlier release created (without
Alembic) is adopted as it is: missing tables are created, columns later releases added are
added, and so are the indexes and unique constraints an older table lacks (the earlier code
never added those to an existing table); when ``alerts`` is created beside the old
``drift_alerts`` table, its rows are copied in as alerts of the prediction_drift rule, so
no breach is emailed twice after an upgrade (the old table is left as it was). Rows stay.
Each change is reported in ``config.attributes["changes"]``.

Revision ID: 0001_baseline
Revises:
Create Date: 2026-12-05
"""

import sqlalchemy as sa
from alembic import context, op

revision = "0001_baseline"
down_revision = None
branch_labels = None
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def tables() -> dict[str, tuple[list[sa.Column], list[tuple[str, str, list[str]]]]]:
    """Each table's columns and its (kind, name, columns) unique constraints and indexes."""
    return {
        "dummy_metrics": (
            [
                sa.Column("id", ID, primary_key=True, autoincrement=True),
                sa.Column("model_name", sa.String(100), nullable=False),
                sa.Column("timestamp", sa.DateTime(), nullable=False),
                sa.Column("model_version", sa.String(50)),
                sa.Column("prediction_drift", sa.Float()),
                sa.Column("num_drifted_columns", sa.Integer()),
                sa.Column("drifted_columns", sa.Text()),
                sa.Column("share_missing_values", sa.Float()),
                sa.Column("n_rows", sa.Integer(), nullable=False),
                sa.Column("n_scored", sa.Integer(), nullable=False),
                sa.Column("drift_threshold", sa.Float()),
                sa.Column("report_path", sa.Text()),
                sa.Column("dagster_run_id", sa.String(64)),
                sa.Column("computed_at", sa.DateTime(), nullable=False),
                sa.Column("rmse", sa.Float()),
                sa.Column("mae", sa.Float()),
                sa.Column("mean_error", sa.Float()),
                sa.Column("rmse_ratio", sa.Float()),
                sa.Column("holdout_rmse", sa.Float()),
                sa.Column("drift_method", sa.String(32)),
            ],
            [
                ("unique", "uq_dummy_metrics_model_timestamp", ["model_name", "timestamp"]),
                ("index", "ix_dummy_metrics_model_computed_at", ["model_name", "computed_at"]),
            ],
        ),
        "model_timeline": (
            [
                sa.Column("id", ID, primary_key=True, autoincrement=True),
                sa.Column("model_name", sa.String(100), nullable=False),
                sa.Column("model_version", sa.String(50), nullable=False),
                sa.Column("effective_from", sa.Date(), nullable=False),
                sa.Column("recorded_at", sa.DateTime(), nullable=False),
                sa.Column("reason", sa.Text()),
                sa.Column("holdout_rmse", sa.Float()),
                sa.Column("previous_version", sa.String(50)),
                sa.Column("previous_rmse", sa.Float()),
                sa.Column("window_end", sa.Date()),
            ],
            [("unique", "uq_model_timeline_model_day", ["model_name", "effective_from"])],
        ),
        "alerts": (
            [
                sa.Column("id", ID, primary_key=True, autoincrement=True),
                sa.Column("model_name", sa.String(100), nullable=False),
                sa.Column("rule", sa.String(64), nullable=False),
                sa.Column("metric", sa.String(64), nullable=False),
                sa.Column("op", sa.String(2), nullable=False),
                sa.Column("threshold", sa.Float(), nullable=False),
                sa.Column("for_days", sa.Integer(), nullable=False, server_default="1"),
                sa.Column("timestamp", sa.DateTime(), nullable=False),
                sa.Column("value", sa.Float(), nullable=False),
                sa.Column("model_version", sa.String(50)),
                sa.Column("retrain", sa.Boolean(), nullable=False),
                sa.Column("detected_at", sa.DateTime(), nullable=False),
                sa.Column("status", sa.String(16), nullable=False),
                sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"),
                sa.Column("last_error", sa.Text()),
                sa.Column("sent_at", sa.DateTime()),
                sa.Column("message_id", sa.String(255)),
            ],
            [
                ("unique", "uq_alerts_model_rule_timestamp", ["model_name", "rule", "timestamp"]),
                ("index", "ix_alerts_status", ["model_name", "status"]),
            ],
        ),
    }


LEGACY_DRIFT_ALERTS = "drift_alerts"
COPY_LEGACY_ALERTS = sa.text(f"""
    insert into alerts (model_name, rule, metric, op, threshold, for_days, timestamp, value,
                        model_version, retrain, detected_at, status, attempts, last_error,
                        sent_at, message_id)
    select model_name, 'prediction_drift', 'prediction_drift', '>', drift_threshold, 1, timestamp,
           prediction_drift, model_version, :retrain, detected_at, status, attempts, last_error,
           sent_at, message_id
    from {LEGACY_DRIFT_ALERTS}
""")

# A table's column names from the catalog alone. SQLAlchemy's get_columns also deparses column
# defaults with pg_get_expr, which takes a lock on the table.
PG_COLUMNS = sa.text(
    "select attname from pg_catalog.pg_attribute "
    "where attrelid = to_regclass(:table) and attnum > 0 and not attisdropped"
)


def column_names(bind, inspector, table: str) -> set[str]:
    if bind.dialect.name == "postgresql":
        return {r[0] for r in bind.execute(PG_COLUMNS, {"table": table})}
    return {c["name"] for c in inspector.get_columns(table)}


def indexed_column_sets(inspector, table: str) -> set[tuple[str, ...]]:
    """The column lists a unique constraint or an index of ``table`` covers."""
    found = {tuple(u["column_names"]) for u in inspector.get_unique_constraints(table)}
    found |= {tuple(i["column_names"]) for i in inspector.get_indexes(table)}
    return found


def upgrade() -> None:
    changes: list[str] = context.config.attributes.setdefault("changes", [])
    bind = op.get_bind()
    inspector = sa.inspect(bind)
    existing = set(inspector.get_table_names())
    for name, (columns, constraints) in tables().items():
        if name not in existing:
            uniques = [
                sa.UniqueConstraint(*cols, name=n) for kind, n, cols in constraints if kind == "unique"
            ]
            op.create_table(name, *columns, *uniques)
            for kind, index, cols in constraints:
                if kind == "index":
                    op.create_index(index, name, cols)
            changes.append(f"created table {name}")
            if name == "alerts" and LEGACY_DRIFT_ALERTS in existing:
                copied = bind.execute(COPY_LEGACY_ALERTS, {"retrain": True}).rowcount
                changes.append(f"copied {copied} row(s) of {LEGACY_DRIFT_ALERTS} into alerts")
            continue
        have = column_names(bind, inspector, name)
        for column in columns:
            if column.name not in have:
                op.add_column(name, column)
                changes.append(f"added column {name}.{column.name}")
        covered = indexed_column_sets(inspector, name)
        for kind, index, cols in constraints:
            if tuple(cols) in covered:
                continue
            # A unique index does what the constraint does (ON CONFLICT finds it), and SQLite
            # cannot add a constraint to an existing table.
            op.create_index(index, name, cols, unique=kind == "unique")
            changes.append(f"added {'unique index' if kind == 'unique' else 'index'} {index}")


def downgrade() -> None:
    for name in ("alerts", "model_timeline", "dummy_metrics"):
        op.drop_table(name)
