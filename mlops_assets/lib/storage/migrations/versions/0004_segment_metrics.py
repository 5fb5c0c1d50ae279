"""Table ``segment_metrics``: a monitored day's error per segment (pick-up and drop-off borough,
hour band, distance band), written beside ``dummy_metrics`` by the daily monitoring run.

Days monitored before this revision have no segment rows (re-materializing them adds them).

Revision ID: 0004_segment_metrics
Revises: 0003_incidents
Create Date: 2026-12-06
"""

import sqlalchemy as sa
from alembic import op

revision = "0004_segment_metrics"
down_revision = "0003_incidents"
branch_labels = None
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "segment_metrics",
        sa.Column("id", ID, primary_key=True, autoincrement=True),
        sa.Column("model_name", sa.String(100), nullable=False),
        sa.Column("timestamp", sa.DateTime(), nullable=False),
        sa.Column("dimension", sa.String(32), nullable=False),
        sa.Column("segment", sa.String(64), nullable=False),
        sa.Column("model_version", sa.String(50)),
        sa.Column("n_rows", sa.Integer(), nullable=False),
        sa.Column("n_scored", sa.Integer(), nullable=False),
        sa.Column("rmse", sa.Float()),
        sa.Column("mae", sa.Float()),
        sa.Column("mean_error", sa.Float()),
        sa.Column("holdout_rmse", sa.Float()),
        sa.Column("error_share", sa.Float()),
        sa.Column("excess_share", sa.Float()),
        sa.Column("computed_at", sa.DateTime(), nullable=False),
        sa.UniqueConstraint("model_name", "timestamp", "dimension", "segment", name="uq_segment_metrics_key"),
    )


def downgrade() -> None:
    op.drop_table("segment_metrics")
