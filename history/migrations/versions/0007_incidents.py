"""incidents: alerts of one camera and zone, line or rule in quick succession handled as one room item;
alerts.escalation_step: the step an escalation level counts

Revision ID: 0007_incidents
Revises: 0005
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007_incidents"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
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


def downgrade() -> None:
    with op.batch_alter_table("alerts") as batch_op:
        batch_op.drop_index(batch_op.f("ix_alerts_incident_id"))
        batch_op.drop_column("incident_id")
        batch_op.drop_column("escalation_step")
    op.drop_index(op.f("ix_incidents_camera_id_group_key_last_seen"), table_name="incidents")
    op.drop_table("incidents")
