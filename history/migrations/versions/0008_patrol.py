"""patrol: video patrol plans, patrols and their marks, camera faults, manual alarms

Revision ID: 0008_patrol
Revises: 0005
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008_patrol"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "patrol_plans",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("name", sa.String(length=120), nullable=False),
        sa.Column("description", sa.Text(), server_default="", nullable=False),
        sa.Column("cameras", sa.Text(), nullable=False),
        sa.Column("grid_cells", sa.Text(), nullable=False),
        sa.Column("schedule", sa.Text(), nullable=True),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("created_by", sa.String(length=64), nullable=False),
        sa.Column("updated_at", sa.Float(), nullable=False),
        sa.Column("updated_by", sa.String(length=64), nullable=False),
        sa.Column("deleted_at", sa.Float(), nullable=True),
        sa.Column("version", sa.Integer(), server_default="0", nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_patrol_plans")),
        sa.UniqueConstraint("name", name=op.f("uq_patrol_plans_name")),
    )
    op.create_table(
        "patrols",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("plan_id", sa.Integer(), nullable=False),
        sa.Column("plan_name", sa.String(length=120), nullable=False),
        sa.Column("planned", sa.Text(), nullable=False),
        sa.Column("grid_cells", sa.Text(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=True),
        sa.Column("username", sa.String(length=64), nullable=False),
        sa.Column("display_name", sa.String(length=200), nullable=False),
        sa.Column("layout", sa.Integer(), server_default="1", nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("started_at", sa.Float(), nullable=False),
        sa.Column("ended_at", sa.Float(), nullable=True),
        sa.ForeignKeyConstraint(["plan_id"], ["patrol_plans.id"], name=op.f("fk_patrols_plan_id_patrol_plans")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_patrols")),
    )
    op.create_index(op.f("ix_patrols_started_at"), "patrols", ["started_at"])
    op.create_index(op.f("ix_patrols_plan_id_started_at"), "patrols", ["plan_id", "started_at"])
    op.create_table(
        "patrol_marks",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("patrol_id", sa.String(length=32), nullable=False),
        sa.Column("camera_id", sa.String(length=64), nullable=False),
        sa.Column("grid_cell_id", sa.String(length=64), nullable=False),
        sa.Column("on_screen_s", sa.Float(), server_default="0", nullable=False),
        sa.Column("first_shown_at", sa.Float(), nullable=True),
        sa.Column("offline", sa.Boolean(), server_default="0", nullable=False),
        sa.Column("mark", sa.String(length=16), nullable=True),
        sa.Column("fault_kind", sa.String(length=16), nullable=True),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("snapshot_path", sa.String(length=400), nullable=True),
        sa.Column("alert_id", sa.String(length=128), nullable=True),
        sa.Column("marked_at", sa.Float(), nullable=True),
        sa.ForeignKeyConstraint(["patrol_id"], ["patrols.id"], name=op.f("fk_patrol_marks_patrol_id_patrols"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_patrol_marks")),
    )
    op.create_index(op.f("ix_patrol_marks_patrol_id_camera_id"), "patrol_marks", ["patrol_id", "camera_id"],
                    unique=True)
    op.create_table(
        "camera_faults",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("camera_id", sa.String(length=64), nullable=False),
        sa.Column("camera_name", sa.String(length=200), nullable=False),
        sa.Column("grid_cell_id", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("since", sa.Float(), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("reported_by", sa.String(length=64), nullable=False),
        sa.Column("patrol_id", sa.String(length=32), nullable=True),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("state", sa.String(length=20), server_default="open", nullable=False),
        sa.Column("repair_requested_at", sa.Float(), nullable=True),
        sa.Column("repair_requested_by", sa.String(length=64), nullable=True),
        sa.Column("repaired_at", sa.Float(), nullable=True),
        sa.Column("repaired_by", sa.String(length=64), nullable=True),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_camera_faults")),
    )
    op.create_index(op.f("ix_camera_faults_camera_id_state"), "camera_faults", ["camera_id", "state"])
    op.create_index(op.f("ix_camera_faults_grid_cell_id_since"), "camera_faults", ["grid_cell_id", "since"])
    op.create_table(
        "manual_alarms",
        sa.Column("alert_id", sa.String(length=128), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("patrol_id", sa.String(length=32), nullable=True),
        sa.Column("camera_id", sa.String(length=64), nullable=True),
        sa.Column("grid_cell_id", sa.String(length=64), nullable=False),
        sa.Column("caller", sa.String(length=100), nullable=True),
        sa.Column("phone", sa.String(length=32), nullable=True),
        sa.Column("report", sa.Text(), nullable=False),
        sa.Column("point", sa.String(length=64), nullable=True),
        sa.Column("cameras", sa.Text(), server_default="[]", nullable=False),
        sa.Column("range_start", sa.Float(), nullable=True),
        sa.Column("range_end", sa.Float(), nullable=True),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("created_by", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("alert_id", name=op.f("pk_manual_alarms")),
    )
    op.create_index(op.f("ix_manual_alarms_grid_cell_id_created_at"), "manual_alarms",
                    ["grid_cell_id", "created_at"])


def downgrade() -> None:
    op.drop_index(op.f("ix_manual_alarms_grid_cell_id_created_at"), table_name="manual_alarms")
    op.drop_table("manual_alarms")
    op.drop_index(op.f("ix_camera_faults_grid_cell_id_since"), table_name="camera_faults")
    op.drop_index(op.f("ix_camera_faults_camera_id_state"), table_name="camera_faults")
    op.drop_table("camera_faults")
    op.drop_index(op.f("ix_patrol_marks_patrol_id_camera_id"), table_name="patrol_marks")
    op.drop_table("patrol_marks")
    op.drop_index(op.f("ix_patrols_plan_id_started_at"), table_name="patrols")
    op.drop_index(op.f("ix_patrols_started_at"), table_name="patrols")
    op.drop_table("patrols")
    op.drop_table("patrol_plans")
