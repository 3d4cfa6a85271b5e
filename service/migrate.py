"""Bring a job store's schema to the newest migration (service/migrations), once per process start.

Several processes may start at once on one store (gateway, listener, workers): the upgrade runs in
one transaction that holds the store's migration lock, so they take turns and the first one does the
work. SQLite: our engines begin with BEGIN IMMEDIATE, a database-wide write lock. PostgreSQL: a
transaction-scoped advisory lock.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlalchemy.engine import Connection, Engine

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
# Any fixed 64-bit key: PostgreSQL advisory locks are named by number. "PSCT" in ASCII.
PG_MIGRATION_LOCK = 0x50534354


def _config(connection: Connection) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


def head() -> str:
    revision = ScriptDirectory(str(MIGRATIONS)).get_current_head()
    assert revision is not None
    return revision


def current(engine: Engine) -> str | None:
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def upgrade(engine: Engine) -> None:
    with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": PG_MIGRATION_LOCK})
        if MigrationContext.configure(connection).get_current_revision() != head():
            command.upgrade(_config(connection), "head")
