"""The analyses table.

Revision ID: 0001
Revises:
Create Date: 2026-11-27
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "analyses",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("filename", sa.String(512), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("model_key", sa.String(64), nullable=False),
        sa.Column("checkpoint_sha256", sa.String(128), nullable=False),
        sa.Column("precision", sa.String(8), nullable=False),
        sa.Column("untrained_demo", sa.Boolean(), nullable=False),
        sa.Column("rule", sa.String(16), nullable=False),
        sa.Column("result", sa.String(8), nullable=False),
        sa.Column("p_fake", sa.Float(), nullable=False),
        sa.Column("total_s", sa.Float(), nullable=False),
        sa.Column("answer", sa.JSON(), nullable=False),
    )
    op.create_index("ix_analyses_created_at", "analyses", ["created_at"])
    op.create_index("ix_analyses_result", "analyses", ["result"])
    op.create_index("ix_analyses_sha256_model", "analyses", ["sha256", "model_key"])


def downgrade() -> None:
    op.drop_table("analyses")
