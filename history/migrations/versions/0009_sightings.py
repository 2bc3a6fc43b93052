"""sightings: every confirmed track of a person or vehicle, searchable by plate, label, colour, camera and time

Revision ID: 0009_sightings
Revises: 0005
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009_sightings"
down_revision = "0005"
branch_labels = None
depends_on = None

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


def downgrade() -> None:
    for name, _ in INDEXES:
        op.drop_index(op.f(name), table_name="sightings")
    op.drop_table("sightings")
