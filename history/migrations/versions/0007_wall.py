"""The video wall per user: which camera on which tile, and what a pushed tile showed before the push.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007_wall"
down_revision = "0006"


def upgrade() -> None:
    op.create_table(
        "walls",
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("layout", sa.Integer(), server_default="4", nullable=False),
        sa.Column("tiles", sa.Text(), server_default="[]", nullable=False),
        sa.Column("version", sa.Integer(), server_default="0", nullable=False),
        sa.Column("updated_at", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name=op.f("fk_walls_user_id_users"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("user_id", name=op.f("pk_walls")),
    )


def downgrade() -> None:
    op.drop_table("walls")
