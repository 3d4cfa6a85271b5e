"""Alembic environment: run with the connection `service.migrate.upgrade` hands over (never a URL of
its own), so a migration runs inside the caller's locked transaction."""

from __future__ import annotations

from alembic import context

from service.store import Base

connection = context.config.attributes["connection"]
# batch mode: SQLite cannot ALTER most things, Alembic's batch operations rebuild the table instead.
context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
