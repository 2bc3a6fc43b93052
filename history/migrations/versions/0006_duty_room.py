"""The duty room's tables, in one step from 0005:

- login_throttles: failed log-ins per (name, address) with growing delays, instead of locking accounts;
- incidents: alerts of one camera and zone, line or rule in quick succession handled as one room item
  (alerts.incident_id), and alerts.escalation_step, the step an escalation level counts;
- video patrol: plans, patrols and their marks, camera faults, manual alarms;
- sightings: every confirmed track of a person or vehicle, searchable by plate, label, colour, camera and time;
- cases per owner: a case is (owner, name) with its own folder, so one user's case name never reaches another's.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"

INDEXES = [
    ("ix_sightings_first_time", ["first_time"]),
    ("ix_sightings_camera_id_first_time", ["camera_id", "first_time"]),
    ("ix_sightings_grid_cell_id_first_time", ["grid_cell_id", "first_time"]),
    ("ix_sightings_label_first_time", ["label", "first_time"]),
    ("ix_sightings_upper_colour_first_time", ["upper_colour", "first_time"]),
    ("ix_sightings_lower_colour_first_time", ["lower_colour", "first_time"]),
    ("ix_sightings_body_colour_first_time", ["body_colour", "first_time"]),
    ("ix_sightings_plate_first_time", ["plate", "first_time"]),
    ("ix_sightings_plate_front", ["plate_front"]),
    ("ix_sightings_plate_back", ["plate_back"]),
]


def upgrade() -> None:
    # security
    op.create_table(
        "login_throttles",
        sa.Column("username", sa.String(length=64), nullable=False),
        sa.Column("remote", sa.String(length=64), nullable=False),
        sa.Column("fails", sa.Integer(), nullable=False),
        sa.Column("last_at", sa.Float(), nullable=False),
        sa.Column("until", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("username", "remote", name=op.f("pk_login_throttles")),
    )
    # incidents
    op.create_table(
        "incidents",
        sa.Column("id", sa.String(length=128), nullable=False),
        sa.Column("camera_id", sa.String(length=64), nullable=False),
        sa.Column("grid_cell_id", sa.String(length=64), nullable=False),
        sa.Column("group_key", sa.String(length=200), nullable=False),
        sa.Column("first_seen", sa.Float(), nullable=False),
        sa.Column("last_seen", sa.Float(), nullable=False),
        sa.Column("last_end", sa.Float(), nullable=True),
        sa.Column("occurrences", sa.Integer(), server_default="1", nullable=False),
        sa.Column("severity", sa.String(length=16), nullable=False),
        sa.Column("reasons", sa.Text(), server_default="[]", nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_incidents")),
    )
    op.create_index(op.f("ix_incidents_camera_id_group_key_last_seen"), "incidents",
                    ["camera_id", "group_key", "last_seen"])
    with op.batch_alter_table("alerts") as batch_op:
        batch_op.add_column(sa.Column("escalation_step", sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column("incident_id", sa.String(length=128), nullable=True))
        batch_op.create_index(batch_op.f("ix_alerts_incident_id"), ["incident_id"], unique=False)
    # an alert escalated before this revision counted the step it was in then: new ones for the
    # acknowledgement, dispatched ones for the signature (the only two steps that escalated)
    op.execute("UPDATE alerts SET escalation_step = 'acknowledge' WHERE escalation_level > 0 AND state = 'new'")
    op.execute("UPDATE alerts SET escalation_step = 'signed_for' WHERE escalation_level > 0 AND state = 'dispatched'"
               " AND dispatch_step = 'sent'")
    # patrol
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
    # sightings
    op.create_table(
        "sightings",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("sighting_id", sa.String(length=160), nullable=False),
        sa.Column("camera_id", sa.String(length=64), nullable=False),
        sa.Column("grid_cell_id", sa.String(length=64), nullable=True),
        sa.Column("track_id", sa.Integer(), nullable=False),
        sa.Column("label", sa.String(length=32), nullable=False),
        sa.Column("first_time", sa.Float(), nullable=False),
        sa.Column("last_time", sa.Float(), nullable=False),
        sa.Column("best_time", sa.Float(), nullable=False),
        sa.Column("direction", sa.String(length=16), nullable=False),
        sa.Column("upper_colour", sa.String(length=8), nullable=True),
        sa.Column("lower_colour", sa.String(length=8), nullable=True),
        sa.Column("body_colour", sa.String(length=8), nullable=True),
        sa.Column("colours", sa.Text(), server_default="{}", nullable=False),
        sa.Column("plate", sa.String(length=16), nullable=True),
        sa.Column("plate_front", sa.String(length=8), nullable=True),
        sa.Column("plate_back", sa.String(length=8), nullable=True),
        sa.Column("plate_confidence", sa.Float(), nullable=True),
        sa.Column("plate_colour", sa.String(length=8), nullable=True),
        sa.Column("crop_path", sa.String(length=300), nullable=True),
        sa.Column("box", sa.Text(), nullable=True),
        sa.Column("hits", sa.Integer(), server_default="0", nullable=False),
        sa.Column("final", sa.Boolean(), server_default="0", nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sightings")),
        sa.UniqueConstraint("sighting_id", name=op.f("uq_sightings_sighting_id")),
    )
    for name, cols in INDEXES:
        op.create_index(op.f(name), "sightings", cols)
    # case_owner
    with op.batch_alter_table("cases", recreate="auto") as b:
        b.add_column(sa.Column("folder", sa.String(length=200), nullable=True))
        b.drop_constraint("pk_cases", type_="primary")
        b.create_primary_key("pk_cases", ["name", "created_by"])


def downgrade() -> None:
    # case_owner
    with op.batch_alter_table("cases", recreate="auto") as b:
        b.drop_constraint("pk_cases", type_="primary")
        b.create_primary_key("pk_cases", ["name"])
        b.drop_column("folder")
    # sightings
    for name, _ in INDEXES:
        op.drop_index(op.f(name), table_name="sightings")
    op.drop_table("sightings")
    # patrol
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
    # incidents
    with op.batch_alter_table("alerts") as batch_op:
        batch_op.drop_index(batch_op.f("ix_alerts_incident_id"))
        batch_op.drop_column("incident_id")
        batch_op.drop_column("escalation_step")
    op.drop_index(op.f("ix_incidents_camera_id_group_key_last_seen"), table_name="incidents")
    op.drop_table("incidents")
    # security
    op.drop_table("login_throttles")
