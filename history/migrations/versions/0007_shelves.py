"""Shelves (屏蔽): a camera, or one rule of it, whose alerts are stored and shown but do not ring or escalate
until the shelf expires or a supervisor lifts it.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007_shelves"
down_revision = "0006"


def upgrade() -> None:
    op.create_table(
        "shelves",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("camera_id", sa.String(length=64), nullable=False),
        sa.Column("grid_cell_id", sa.String(length=64), nullable=False),
        sa.Column("rule_id", sa.String(length=64), nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("created_by", sa.String(length=64), nullable=False),
        sa.Column("created_by_name", sa.String(length=200), nullable=False),
        sa.Column("expires_at", sa.Float(), nullable=False),
        sa.Column("lifted_at", sa.Float(), nullable=True),
        sa.Column("lifted_by", sa.String(length=64), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_shelves")),
    )
    op.create_index(op.f("ix_shelves_expires_at"), "shelves", ["expires_at"])
    op.create_index(op.f("ix_shelves_camera_id_expires_at"), "shelves", ["camera_id", "expires_at"])


def downgrade() -> None:
    op.drop_index(op.f("ix_shelves_camera_id_expires_at"), table_name="shelves")
    op.drop_index(op.f("ix_shelves_expires_at"), table_name="shelves")
    op.drop_table("shelves")
