"""The room's shelves and walls, watchlists and sightings in cases, in one step from 0006:

- shelves (屏蔽): a camera, or one rule of it, whose alerts are stored and shown but do not ring or escalate
  until the shelf expires or a supervisor lifts it;
- walls: the video wall per user, which camera on which tile and what a pushed tile showed before the push;
- watchlist_entries (布控): plates the room wants to hear about when a camera reads them, with reason, owner,
  expiry and the grid cells they cover;
- cases.sightings: a person or vehicle found on the search page (研判) added to a case.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
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
    with op.batch_alter_table("cases") as b:
        b.add_column(sa.Column("sightings", sa.Text(), server_default="[]", nullable=False))


def downgrade() -> None:
    with op.batch_alter_table("cases") as b:
        b.drop_column("sightings")
    op.drop_index(op.f("ix_watchlist_entries_expires_at"), table_name="watchlist_entries")
    op.drop_index(op.f("ix_watchlist_entries_pattern"), table_name="watchlist_entries")
    op.drop_table("watchlist_entries")
    op.drop_table("walls")
    op.drop_index(op.f("ix_shelves_camera_id_expires_at"), table_name="shelves")
    op.drop_index(op.f("ix_shelves_expires_at"), table_name="shelves")
    op.drop_table("shelves")
