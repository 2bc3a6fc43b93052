"""exports and cases: export jobs started from the page and the cases grouping them
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"


def upgrade() -> None:
    op.create_table(
        "export_jobs",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("export_id", sa.String(length=128), nullable=True),
        sa.Column("user_id", sa.Integer(), nullable=True),
        sa.Column("username", sa.String(length=64), nullable=False),
        sa.Column("cameras", sa.Text(), nullable=False),
        sa.Column("grid_cells", sa.Text(), nullable=False),
        sa.Column("start", sa.Float(), nullable=False),
        sa.Column("end", sa.Float(), nullable=False),
        sa.Column("alert_id", sa.String(length=128), nullable=True),
        sa.Column("case_name", sa.String(length=80), nullable=True),
        sa.Column("precise", sa.Boolean(), server_default="0", nullable=False),
        sa.Column("state", sa.String(length=16), server_default="queued", nullable=False),
        sa.Column("stage", sa.String(length=32), nullable=True),
        sa.Column("progress", sa.Float(), server_default="0", nullable=False),
        sa.Column("bytes_total", sa.Integer(), nullable=True),
        sa.Column("path", sa.String(length=1000), nullable=True),
        sa.Column("files", sa.Text(), nullable=True),
        sa.Column("manifest_sha256", sa.String(length=64), nullable=True),
        sa.Column("size_bytes", sa.Integer(), nullable=True),
        sa.Column("warnings", sa.Text(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("runner", sa.String(length=200), nullable=True),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("started_at", sa.Float(), nullable=True),
        sa.Column("finished_at", sa.Float(), nullable=True),
        sa.Column("released_at", sa.Float(), nullable=True),
        sa.Column("released_by", sa.String(length=64), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_export_jobs")),
        sa.UniqueConstraint("export_id", name=op.f("uq_export_jobs_export_id")),
    )
    op.create_index(op.f("ix_export_jobs_created_at"), "export_jobs", ["created_at"])
    op.create_index(op.f("ix_export_jobs_state"), "export_jobs", ["state"])
    op.create_index(op.f("ix_export_jobs_case_name"), "export_jobs", ["case_name"])
    op.create_table(
        "cases",
        sa.Column("name", sa.String(length=80), nullable=False),
        sa.Column("description", sa.Text(), server_default="", nullable=False),
        sa.Column("alerts", sa.Text(), server_default="[]", nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("created_by", sa.String(length=64), nullable=False),
        sa.Column("updated_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_cases")),
    )


def downgrade() -> None:
    op.drop_table("cases")
    op.drop_index(op.f("ix_export_jobs_case_name"), table_name="export_jobs")
    op.drop_index(op.f("ix_export_jobs_state"), table_name="export_jobs")
    op.drop_index(op.f("ix_export_jobs_created_at"), table_name="export_jobs")
    op.drop_table("export_jobs")
