"""Tests for gateway.storage.db against real SQLite and PostgreSQL databases."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from contextlib import closing
from datetime import UTC, datetime
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Connection, inspect, text
from sqlmodel import SQLModel, select

from gateway.storage.db import Database, MigrationError, open_database, run_migrations
from gateway.storage.tables import UsageRecord


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path}/data/gateway.db"  # data/ does not exist yet


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest) -> str:
    return request.getfixturevalue(f"{request.param}_url")


def usage_record(request_id: str = "req_1") -> UsageRecord:
    return UsageRecord(
        request_id=request_id,
        key_id="key_1",
        model="gpt-test",
        upstream_model="gpt-4o-mini",
        prompt_tokens=7,
        completion_tokens=2,
        cost_usd=0.0012,
        latency_ms=120.5,
        overhead_ms=1.5,
        status_code=200,
        stream=False,
        created_at=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
    )


def head_revision() -> str:
    from alembic.script import ScriptDirectory

    from gateway.storage import db as storage_db

    head = ScriptDirectory(str(storage_db._MIGRATIONS)).get_current_head()
    assert head is not None
    return head


def test_head_revision_constant_is_alembics_head() -> None:
    """A new migration must also move HEAD_REVISION, or databases at the old head would skip it."""
    from gateway.storage import db as storage_db

    assert storage_db.HEAD_REVISION == head_revision()


async def table_names(db: Database) -> list[str]:
    async with db.engine.connect() as connection:
        return await connection.run_sync(lambda sync: inspect(sync).get_table_names())


async def schema_version(db: Database) -> list[str]:
    async with db.engine.connect() as connection:
        return list((await connection.execute(text("SELECT version_num FROM alembic_version"))).scalars())


async def test_open_database_creates_tables_and_round_trips_a_row(database_url: str) -> None:
    async with open_database(database_url) as db:
        assert "usage_records" in await table_names(db)
        async with db.session() as session:
            session.add(usage_record())
            await session.commit()
        async with db.session() as session:
            row = (await session.exec(select(UsageRecord))).one()
    assert row.id is not None
    assert (row.request_id, row.key_id, row.team_id, row.model) == ("req_1", "key_1", None, "gpt-test")
    assert (row.prompt_tokens, row.completion_tokens, row.cached_tokens) == (7, 2, 0)
    assert (row.cost_usd, row.stream, row.error_code) == (0.0012, False, None)
    assert row.created_at == datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert row.created_at.tzinfo is UTC  # aware on SQLite too, which stores no offset


async def test_open_database_twice_keeps_rows_and_schema_version(database_url: str) -> None:
    async with open_database(database_url) as db:
        async with db.session() as session:
            session.add(usage_record())
            await session.commit()
    run_migrations(database_url)  # already at head: nothing to do
    async with open_database(database_url) as db:
        assert await schema_version(db) == [head_revision()]
        async with db.session() as session:
            assert (await session.exec(select(UsageRecord.request_id))).all() == ["req_1"]


async def test_migrations_match_tables_module(database_url: str) -> None:
    def compare(connection: Connection) -> list[object]:
        return compare_metadata(MigrationContext.configure(connection), SQLModel.metadata)

    async with open_database(database_url) as db, db.engine.connect() as connection:
        assert await connection.run_sync(compare) == []  # a change to tables.py needs a migration


async def test_open_database_sqlite_creates_file_in_wal_mode(sqlite_url: str, tmp_path: Path) -> None:
    async with open_database(sqlite_url) as db, db.engine.connect() as connection:
        journal_mode = (await connection.execute(text("PRAGMA journal_mode"))).scalar()
        busy_timeout = (await connection.execute(text("PRAGMA busy_timeout"))).scalar()
    assert (tmp_path / "data" / "gateway.db").is_file()
    assert (journal_mode, busy_timeout) == ("wal", 5000)


@pytest.mark.postgres
async def test_open_database_postgres_uses_psycopg3(postgres_url: str) -> None:
    async with open_database(postgres_url) as db:
        assert db.engine.dialect.driver == "psycopg"
        assert db.url == postgres_url


async def test_open_database_unknown_revision_raises_migration_error(tmp_path: Path) -> None:
    path = tmp_path / "newer.db"
    with closing(sqlite3.connect(path)) as connection, connection:
        connection.execute("CREATE TABLE alembic_version (version_num VARCHAR(32) PRIMARY KEY)")
        connection.execute("INSERT INTO alembic_version VALUES ('9999')")  # written by a newer gateway
    with pytest.raises(MigrationError) as raised:
        async with open_database(f"sqlite:///{path}"):
            pass
    assert f"Migrating database sqlite:///{path} to head failed" in str(raised.value)
    assert "9999" in str(raised.value)


async def test_open_database_unreachable_postgres_raises_migration_error_with_masked_url() -> None:
    with pytest.raises(MigrationError) as raised:
        async with open_database("postgresql://gw:s3cret@127.0.0.1:1/gateway"):
            pass
    message = str(raised.value)
    assert message.startswith("Migrating database postgresql://gw:***@127.0.0.1:1/gateway to head failed")
    assert "s3cret" not in message


async def test_open_database_unsupported_driver_raises_migration_error() -> None:
    with pytest.raises(MigrationError, match="Unsupported database URL scheme 'postgresql\\+psycopg2'"):
        async with open_database("postgresql+psycopg2://gw:s3cret@127.0.0.1/gateway"):
            pass


def test_database_at_head_opens_without_importing_alembic(sqlite_url: str) -> None:
    run_migrations(sqlite_url)
    script = (
        "import asyncio, sys\n"
        "from gateway.storage.db import open_database\n"
        "async def main():\n"
        f"    async with open_database({sqlite_url!r}):\n"
        "        pass\n"
        "asyncio.run(main())\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'alembic', 'mako', 'pygments'}))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True)
    assert done.stdout.strip() == "[]"
