"""Ops notices: what the platform noticed about itself (failed runs, days not monitored by
their deadline, retrains that never started), each recorded once and emailed.

Revision ID: 0005_ops_notices
Revises: 0004_segment_metrics
Create Date: 2026-12-06
"""

import sqlalchemy as sa
from alembic import op

revision = "0005_ops_notices"
down_revision = "0004_segment_metrics"
branch_labels = None
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "ops_notices",
        sa.Column("id", ID, primary_key=True, autoincrement=True),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("key", sa.String(255), nullable=False),
        sa.Column("model_name", sa.String(100)),
        sa.Column("summary", sa.Text(), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column("noticed_at", sa.DateTime(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("last_error", sa.Text()),
        sa.Column("sent_at", sa.DateTime()),
        sa.Column("message_id", sa.String(255)),
        sa.UniqueConstraint("kind", "key", name="uq_ops_notices_kind_key"),
    )
    op.create_index("ix_ops_notices_status", "ops_notices", ["status"])


def downgrade() -> None:
    op.drop_index("ix_ops_notices_status", "ops_notices")
    op.drop_table("ops_notices")
