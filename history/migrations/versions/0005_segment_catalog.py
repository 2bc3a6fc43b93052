"""segment_catalog: which worker holds which recorded segment (recordings split across machines)
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"


def upgrade() -> None:
    op.create_table(
        "segment_catalog",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("dedupe_key", sa.String(length=300), nullable=False),
        sa.Column("camera_id", sa.String(length=64), nullable=False),
        sa.Column("start", sa.Float(), nullable=False),
        sa.Column("end", sa.Float(), nullable=False),
        sa.Column("bytes", sa.BigInteger(), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=True),
        sa.Column("worker", sa.String(length=128), nullable=False),
        sa.Column("token", sa.Integer(), nullable=True),
        sa.Column("address", sa.String(length=300), nullable=False),
        sa.Column("sig", sa.String(length=64), nullable=True),
        sa.Column("announced_at", sa.Float(), nullable=False),
        sa.Column("stream_id", sa.String(length=64), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_segment_catalog")),
        sa.UniqueConstraint("dedupe_key", name=op.f("uq_segment_catalog_dedupe_key")),
    )
    op.create_index(op.f("ix_segment_catalog_camera_id_start"), "segment_catalog", ["camera_id", "start"])


def downgrade() -> None:
    op.drop_index(op.f("ix_segment_catalog_camera_id_start"), table_name="segment_catalog")
    op.drop_table("segment_catalog")
