"""Owners: every analysis belongs to the API key id that made it; listings by owner and time.

Rows stored before owners existed were made by a service without tenancy, where every caller
shared one history: they go to the shared owner ``local`` (what a service without keys uses), so
with keys configured only an operator sees or erases them.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("analyses") as batch:
        batch.add_column(sa.Column("owner", sa.String(64), nullable=False, server_default="local"))
    op.drop_index("ix_analyses_sha256_model", table_name="analyses")
    op.create_index("ix_analyses_owner_created", "analyses", ["owner", "created_at"])
    op.create_index("ix_analyses_owner_sha256_model", "analyses", ["owner", "sha256", "model_key"])


def downgrade() -> None:
    op.drop_index("ix_analyses_owner_sha256_model", table_name="analyses")
    op.drop_index("ix_analyses_owner_created", table_name="analyses")
    op.create_index("ix_analyses_sha256_model", "analyses", ["sha256", "model_key"])
    with op.batch_alter_table("analyses") as batch:
        batch.drop_column("owner")
