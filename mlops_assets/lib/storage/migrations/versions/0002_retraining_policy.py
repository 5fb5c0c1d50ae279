"""The retraining policy at daily cadence: shadow scores in dummy_metrics, what kind of change
each model timeline entry is (with its paired difference), and model_decisions, the log of
every retrain and promotion decision (refusals and rollbacks included).

Revision ID: 0002_retraining_policy
Revises: 0001_baseline
Create Date: 2026-12-05
"""

import sqlalchemy as sa
from alembic import op

revision = "0002_retraining_policy"
down_revision = "0001_baseline"
branch_labels = None
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("dummy_metrics") as table:
        table.add_column(sa.Column("shadow_version", sa.String(50)))
        table.add_column(sa.Column("shadow_n", sa.Integer()))
        table.add_column(sa.Column("shadow_rmse", sa.Float()))
        table.add_column(sa.Column("shadow_mse_diff", sa.Float()))
        table.add_column(sa.Column("shadow_mse_diff_sd", sa.Float()))
    with op.batch_alter_table("model_timeline") as table:
        # first | promoted | rolled_back (rows before this revision: first, then promoted)
        table.add_column(sa.Column("kind", sa.String(16)))
        table.add_column(sa.Column("rmse_diff", sa.Float()))
        table.add_column(sa.Column("rmse_diff_low", sa.Float()))
        table.add_column(sa.Column("rmse_diff_high", sa.Float()))
    op.execute(
        "update model_timeline set kind = case when previous_version is null then 'first' else 'promoted' end"
    )
    op.create_table(
        "model_decisions",
        sa.Column("id", ID, primary_key=True, autoincrement=True),
        sa.Column("model_name", sa.String(100), nullable=False),
        sa.Column("decision_key", sa.String(120), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("decided_at", sa.DateTime(), nullable=False),
        sa.Column("version", sa.String(50)),
        sa.Column("champion_version", sa.String(50)),
        sa.Column("episode_start", sa.Date()),
        sa.Column("attempt", sa.Integer()),
        sa.Column("trigger", sa.Text()),
        sa.Column("window_start", sa.Date()),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("rmse_diff", sa.Float()),
        sa.Column("rmse_diff_low", sa.Float()),
        sa.Column("rmse_diff_high", sa.Float()),
        sa.Column("n_trips", sa.Integer()),
        sa.Column("effective_from", sa.Date()),
        sa.Column("dagster_run_id", sa.String(64)),
        sa.Column("notify_status", sa.String(16)),
        sa.Column("notify_attempts", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("message_id", sa.String(255)),
        sa.Column("last_error", sa.Text()),
        sa.UniqueConstraint("model_name", "decision_key", name="uq_model_decisions_model_key"),
    )
    op.create_index("ix_model_decisions_episode", "model_decisions", ["model_name", "episode_start"])


def downgrade() -> None:
    op.drop_index("ix_model_decisions_episode", "model_decisions")
    op.drop_table("model_decisions")
    with op.batch_alter_table("model_timeline") as table:
        for name in ("rmse_diff_high", "rmse_diff_low", "rmse_diff", "kind"):
            table.drop_column(name)
    with op.batch_alter_table("dummy_metrics") as table:
        for name in ("shadow_mse_diff_sd", "shadow_mse_diff", "shadow_rmse", "shadow_n", "shadow_version"):
            table.drop_column(name)
