"""cases owned: a case is (owner, name), each with its own folder, so one user's case name never reaches another's

Revision ID: 0010_case_owner
Revises: 0005
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010_case_owner"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # existing rows keep folder NULL: their files stay where they are, <exports>/cases/<name>
    with op.batch_alter_table("cases", recreate="auto") as b:
        b.add_column(sa.Column("folder", sa.String(length=200), nullable=True))
        b.drop_constraint("pk_cases", type_="primary")
        b.create_primary_key("pk_cases", ["name", "created_by"])


def downgrade() -> None:
    with op.batch_alter_table("cases", recreate="auto") as b:
        b.drop_constraint("pk_cases", type_="primary")
        b.create_primary_key("pk_cases", ["name"])
        b.drop_column("folder")
