"""The job store's schema comes from Alembic migrations (service/migrations), on SQLite and on a
real PostgreSQL: they build exactly the models' schema, upgrade a store made before migrations
existed without losing its rows, and survive several processes starting at once."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, inspect

from service import migrate
from service.store import Base, JobStore, engine_for
from tests.conftest import REPO

V0_1_TABLES = ("jobs", "deliveries", "instances", "audit", "leases")  # what create_all made up to v0.1


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.sqlite'}"
    return request.getfixturevalue("postgres_url")


def test_migrations_build_exactly_the_models_schema(store_url: str) -> None:
    engine = JobStore(store_url).engine
    assert migrate.current(engine) == migrate.head()
    with engine.connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    assert differences == []
    assert set(inspect(engine).get_table_names()) >= {*V0_1_TABLES, "workers"}


def test_a_store_made_before_migrations_upgrades_in_place(store_url: str) -> None:
    """v0.1 made its tables with create_all and had no alembic_version: its rows survive the upgrade."""
    legacy = create_engine(store_url)
    Base.metadata.create_all(legacy, tables=[Base.metadata.tables[name] for name in V0_1_TABLES])
    with legacy.begin() as connection:
        connection.exec_driver_sql(
            "INSERT INTO jobs (id, status, progress, source, created_at, instances, notes_json) "
            "VALUES ('0123456789abcdef0123456789abcdef', 'succeeded', 1.0, 'rest', '2026-01-01 00:00:00+00', 160, '[]')"
        )
    legacy.dispose()
    assert migrate.current(create_engine(store_url)) is None
    store = JobStore(store_url)
    assert migrate.current(store.engine) == migrate.head()
    job = store.get("0123456789abcdef0123456789abcdef")
    assert job is not None and job.status == "succeeded" and job.instances == 160
    assert "workers" in inspect(store.engine).get_table_names()


def test_every_migration_downgrades_and_upgrades_again(tmp_path: Path) -> None:
    engine = engine_for(f"sqlite:///{tmp_path / 'store.sqlite'}")
    with engine.begin() as connection:
        command.downgrade(migrate._config(connection), "base")
    assert migrate.current(engine) is None and inspect(engine).get_table_names() == ["alembic_version"]
    migrate.upgrade(engine)
    assert migrate.current(engine) == migrate.head()


def test_processes_starting_at_once_migrate_once(postgres_url: str) -> None:
    """Gateway, listener and workers start together on a fresh database: the migration lock makes
    them take turns; every one of them opens the store."""
    code = "import sys; from service.store import JobStore; JobStore(sys.argv[1]).ping()"
    processes = [subprocess.Popen([sys.executable, "-c", code, postgres_url], cwd=REPO, stderr=subprocess.PIPE)
                 for _ in range(6)]  # fmt: skip
    errors = [p.communicate(timeout=120)[1].decode() for p in processes]
    assert [p.returncode for p in processes] == [0] * 6, errors
    assert migrate.current(create_engine(postgres_url)) == migrate.head()
