"""Cases link sightings: a person or vehicle found on the search page (研判) added to a case.

Revision ID: 0007_case_sightings
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007_case_sightings"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("cases") as b:
        b.add_column(sa.Column("sightings", sa.Text(), server_default="[]", nullable=False))


def downgrade() -> None:
    with op.batch_alter_table("cases") as b:
        b.drop_column("sightings")
