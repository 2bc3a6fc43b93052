"""Watchlists (布控): plates the room wants to hear about when a camera reads them, with reason, owner,
expiry and the grid cells they cover.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007_watchlists"
down_revision = "0006"


def upgrade() -> None:
    op.create_table(
        "watchlist_entries",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("pattern", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("owner", sa.String(length=64), nullable=False),
        sa.Column("cells", sa.Text(), nullable=False),
        sa.Column("expires_at", sa.Float(), nullable=True),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("created_by", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_watchlist_entries")),
    )
    op.create_index(op.f("ix_watchlist_entries_pattern"), "watchlist_entries", ["pattern"])
    op.create_index(op.f("ix_watchlist_entries_expires_at"), "watchlist_entries", ["expires_at"])


def downgrade() -> None:
    op.drop_index(op.f("ix_watchlist_entries_expires_at"), table_name="watchlist_entries")
    op.drop_index(op.f("ix_watchlist_entries_pattern"), table_name="watchlist_entries")
    op.drop_table("watchlist_entries")
