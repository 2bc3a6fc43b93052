"""Alembic environment: runs on the connection ``history.db.migrate`` hands over."""

from __future__ import annotations

from alembic import context

from history.schema import metadata

conn = context.config.attributes.get("connection")
if conn is None:
    raise RuntimeError("run migrations through history.db.migrate(engine)")
context.configure(connection=conn, target_metadata=metadata, render_as_batch=conn.dialect.name == "sqlite")
with context.begin_transaction():
    context.run_migrations()
