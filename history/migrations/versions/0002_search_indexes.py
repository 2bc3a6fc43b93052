"""search indexes end with (start_time, id): key-paged searches read an index range, never sort
"""

from __future__ import annotations

from alembic import op

revision = "0002"
down_revision = "0001"

LEADS = ("camera_id", "grid_cell_id", "state", "kind", "rule_id")


def upgrade() -> None:
    op.drop_index("ix_alerts_start_time", table_name="alerts")
    op.create_index("ix_alerts_start_time_id", "alerts", ["start_time", "id"])
    for col in LEADS:
        op.drop_index(f"ix_alerts_{col}_start_time", table_name="alerts")
        op.create_index(f"ix_alerts_{col}_start_time_id", "alerts", [col, "start_time", "id"])


def downgrade() -> None:
    op.drop_index("ix_alerts_start_time_id", table_name="alerts")
    op.create_index("ix_alerts_start_time", "alerts", ["start_time"])
    for col in LEADS:
        op.drop_index(f"ix_alerts_{col}_start_time_id", table_name="alerts")
        op.create_index(f"ix_alerts_{col}_start_time", "alerts", [col, "start_time"])
