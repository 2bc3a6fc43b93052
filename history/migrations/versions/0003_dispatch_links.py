"""dispatch links: one-time links for the dispatched officer's phone page
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"


def upgrade() -> None:
    op.create_table(
        "dispatch_links",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("alert_id", sa.String(length=128), nullable=False),
        sa.Column("officer_name", sa.String(length=200), nullable=True),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("created_by", sa.String(length=64), nullable=False),
        sa.Column("expires_at", sa.Float(), nullable=False),
        sa.Column("revoked_at", sa.Float(), nullable=True),
        sa.ForeignKeyConstraint(["alert_id"], ["alerts.id"], name=op.f("fk_dispatch_links_alert_id_alerts"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dispatch_links")),
    )
    op.create_index(op.f("ix_dispatch_links_alert_id"), "dispatch_links", ["alert_id"])


def downgrade() -> None:
    op.drop_index(op.f("ix_dispatch_links_alert_id"), table_name="dispatch_links")
    op.drop_table("dispatch_links")
