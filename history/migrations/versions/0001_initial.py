"""initial schema: alerts, messages, camera events, actions, users, sessions
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0001'
down_revision = None


def upgrade() -> None:
    op.create_table('actions',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('time', sa.Float(), nullable=False),
    sa.Column('alert_id', sa.String(length=128), nullable=True),
    sa.Column('grid_cell_id', sa.String(length=64), nullable=True),
    sa.Column('user_id', sa.Integer(), nullable=True),
    sa.Column('username', sa.String(length=64), nullable=True),
    sa.Column('action', sa.String(length=32), nullable=False),
    sa.Column('from_state', sa.String(length=16), nullable=True),
    sa.Column('to_state', sa.String(length=16), nullable=True),
    sa.Column('note', sa.Text(), nullable=True),
    sa.Column('data', sa.Text(), nullable=True),
    sa.Column('remote', sa.String(length=64), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_actions'))
    )
    with op.batch_alter_table('actions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_actions_alert_id_id'), ['alert_id', 'id'], unique=False)
        batch_op.create_index(batch_op.f('ix_actions_time'), ['time'], unique=False)

    op.create_table('alert_messages',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('dedupe_key', sa.String(length=300), nullable=False),
    sa.Column('alert_id', sa.String(length=128), nullable=False),
    sa.Column('phase', sa.String(length=8), nullable=False),
    sa.Column('time', sa.Float(), nullable=False),
    sa.Column('stream_id', sa.String(length=32), nullable=True),
    sa.Column('message', sa.Text(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_alert_messages')),
    sa.UniqueConstraint('dedupe_key', name=op.f('uq_alert_messages_dedupe_key'))
    )
    with op.batch_alter_table('alert_messages', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_alert_messages_alert_id'), ['alert_id'], unique=False)

    op.create_table('camera_events',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('dedupe_key', sa.String(length=300), nullable=False),
    sa.Column('camera_id', sa.String(length=64), nullable=False),
    sa.Column('camera_name', sa.String(length=200), nullable=False),
    sa.Column('grid_cell_id', sa.String(length=64), nullable=False),
    sa.Column('phase', sa.String(length=8), nullable=False),
    sa.Column('time', sa.Float(), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=True),
    sa.Column('detail', sa.Text(), nullable=True),
    sa.Column('stream_id', sa.String(length=32), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_camera_events')),
    sa.UniqueConstraint('dedupe_key', name=op.f('uq_camera_events_dedupe_key'))
    )
    with op.batch_alter_table('camera_events', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_camera_events_camera_id_time'), ['camera_id', 'time'], unique=False)
        batch_op.create_index(batch_op.f('ix_camera_events_time'), ['time'], unique=False)

    op.create_table('users',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('username', sa.String(length=64), nullable=False),
    sa.Column('display_name', sa.String(length=200), nullable=False),
    sa.Column('password_hash', sa.String(length=255), nullable=False),
    sa.Column('role', sa.String(length=16), nullable=False),
    sa.Column('cells', sa.Text(), nullable=False),
    sa.Column('locale', sa.String(length=8), server_default='zh-CN', nullable=False),
    sa.Column('disabled', sa.Boolean(), server_default='0', nullable=False),
    sa.Column('failed_logins', sa.Integer(), server_default='0', nullable=False),
    sa.Column('locked_until', sa.Float(), nullable=True),
    sa.Column('created_at', sa.Float(), nullable=False),
    sa.Column('password_changed_at', sa.Float(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_users')),
    sa.UniqueConstraint('username', name=op.f('uq_users_username'))
    )
    op.create_table('alerts',
    sa.Column('id', sa.String(length=128), nullable=False),
    sa.Column('camera_id', sa.String(length=64), nullable=False),
    sa.Column('camera_name', sa.String(length=200), nullable=False),
    sa.Column('grid_cell_id', sa.String(length=64), nullable=False),
    sa.Column('grid_cell_name', sa.String(length=200), nullable=False),
    sa.Column('officer_name', sa.String(length=200), nullable=True),
    sa.Column('officer_phone', sa.String(length=32), nullable=True),
    sa.Column('rule_id', sa.String(length=64), nullable=False),
    sa.Column('kind', sa.String(length=32), nullable=False),
    sa.Column('severity', sa.String(length=16), nullable=False),
    sa.Column('labels', sa.String(length=300), nullable=False),
    sa.Column('score', sa.Float(), nullable=False),
    sa.Column('start_time', sa.Float(), nullable=False),
    sa.Column('end_time', sa.Float(), nullable=True),
    sa.Column('phase', sa.String(length=8), nullable=False),
    sa.Column('updated_at', sa.Float(), nullable=False),
    sa.Column('snapshot_path', sa.String(length=400), nullable=True),
    sa.Column('message', sa.Text(), nullable=False),
    sa.Column('state', sa.String(length=16), server_default='new', nullable=False),
    sa.Column('owner_id', sa.Integer(), nullable=True),
    sa.Column('owner_name', sa.String(length=200), nullable=True),
    sa.Column('acknowledged_at', sa.Float(), nullable=True),
    sa.Column('acknowledged_by', sa.String(length=200), nullable=True),
    sa.Column('dispatch_step', sa.String(length=16), nullable=True),
    sa.Column('dispatched_at', sa.Float(), nullable=True),
    sa.Column('signed_for_at', sa.Float(), nullable=True),
    sa.Column('on_scene_at', sa.Float(), nullable=True),
    sa.Column('feedback_at', sa.Float(), nullable=True),
    sa.Column('closed_at', sa.Float(), nullable=True),
    sa.Column('closed_by', sa.String(length=200), nullable=True),
    sa.Column('classification', sa.String(length=16), nullable=True),
    sa.Column('close_comment', sa.Text(), nullable=True),
    sa.Column('escalation_level', sa.Integer(), server_default='0', nullable=False),
    sa.Column('escalated_at', sa.Float(), nullable=True),
    sa.Column('version', sa.Integer(), server_default='0', nullable=False),
    sa.ForeignKeyConstraint(['owner_id'], ['users.id'], name=op.f('fk_alerts_owner_id_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_alerts'))
    )
    with op.batch_alter_table('alerts', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_alerts_camera_id_start_time'), ['camera_id', 'start_time'], unique=False)
        batch_op.create_index(batch_op.f('ix_alerts_grid_cell_id_start_time'), ['grid_cell_id', 'start_time'],
                              unique=False)
        batch_op.create_index(batch_op.f('ix_alerts_kind_start_time'), ['kind', 'start_time'], unique=False)
        batch_op.create_index(batch_op.f('ix_alerts_rule_id_start_time'), ['rule_id', 'start_time'], unique=False)
        batch_op.create_index(batch_op.f('ix_alerts_start_time'), ['start_time'], unique=False)
        batch_op.create_index(batch_op.f('ix_alerts_state_start_time'), ['state', 'start_time'], unique=False)

    op.create_table('sessions',
    sa.Column('id', sa.String(length=64), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('csrf_token', sa.String(length=64), nullable=False),
    sa.Column('created_at', sa.Float(), nullable=False),
    sa.Column('last_seen', sa.Float(), nullable=False),
    sa.Column('expires_at', sa.Float(), nullable=False),
    sa.Column('remote', sa.String(length=64), nullable=True),
    sa.Column('user_agent', sa.String(length=300), nullable=True),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_sessions_user_id_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_sessions'))
    )
    with op.batch_alter_table('sessions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_sessions_user_id'), ['user_id'], unique=False)
    append_only("actions")


def append_only(table: str) -> None:
    """Triggers that refuse UPDATE and DELETE: the audit log is evidence, nobody edits it."""
    if op.get_bind().dialect.name == "sqlite":
        for verb in ("UPDATE", "DELETE"):
            op.execute(f"CREATE TRIGGER {table}_no_{verb.lower()} BEFORE {verb} ON {table} "
                       f"BEGIN SELECT RAISE(ABORT, '{table} is append-only'); END")
    elif op.get_bind().dialect.name == "postgresql":
        op.execute("CREATE OR REPLACE FUNCTION sharpeye_append_only() RETURNS trigger LANGUAGE plpgsql AS "
                   "$$ BEGIN RAISE EXCEPTION '% is append-only', TG_TABLE_NAME; END $$")
        op.execute(f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
                   "FOR EACH ROW EXECUTE FUNCTION sharpeye_append_only()")


def downgrade() -> None:
    with op.batch_alter_table('sessions', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_sessions_user_id'))

    op.drop_table('sessions')
    with op.batch_alter_table('alerts', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_alerts_state_start_time'))
        batch_op.drop_index(batch_op.f('ix_alerts_start_time'))
        batch_op.drop_index(batch_op.f('ix_alerts_rule_id_start_time'))
        batch_op.drop_index(batch_op.f('ix_alerts_kind_start_time'))
        batch_op.drop_index(batch_op.f('ix_alerts_grid_cell_id_start_time'))
        batch_op.drop_index(batch_op.f('ix_alerts_camera_id_start_time'))

    op.drop_table('alerts')
    op.drop_table('users')
    with op.batch_alter_table('camera_events', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_camera_events_time'))
        batch_op.drop_index(batch_op.f('ix_camera_events_camera_id_time'))

    op.drop_table('camera_events')
    with op.batch_alter_table('alert_messages', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_alert_messages_alert_id'))

    op.drop_table('alert_messages')
    with op.batch_alter_table('actions', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_actions_time'))
        batch_op.drop_index(batch_op.f('ix_actions_alert_id_id'))

    op.drop_table('actions')
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION IF EXISTS sharpeye_append_only()")
