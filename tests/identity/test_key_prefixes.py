"""key_prefixes: every prefix a key has had names that key forever; a new secret never reuses one; keys made
before the table existed get theirs when the database is migrated."""

from __future__ import annotations

import shutil
import sqlite3
from collections.abc import AsyncIterator, Iterator
from contextlib import closing
from pathlib import Path

import pytest
from alembic import command
from alembic.config import Config
from sqlalchemy import create_engine
from sqlmodel import select

from gateway.identity.keys import KeyService
from gateway.schemas.admin import KeyCreate
from gateway.storage import db as storage_db
from gateway.storage.db import Database, open_database, run_migrations
from gateway.storage.tables import KeyPrefix


def secrets_of(*prefixes: str) -> Iterator[str]:
    """Secrets whose visible prefixes come in the given order (each is sk-gw- and six characters)."""
    for n, prefix in enumerate(prefixes):
        yield f"sk-gw-{prefix}" + f"{n:038d}"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def db(request: pytest.FixtureRequest, tmp_path: Path, migrated_sqlite: Path) -> AsyncIterator[Database]:
    if request.param == "postgres":  # its foreign keys are enforced: a prefix row needs its key row first
        url = request.getfixturevalue("postgres_url")
    else:
        shutil.copyfile(migrated_sqlite, tmp_path / "gateway.db")
        url = f"sqlite:///{tmp_path / 'gateway.db'}"
    async with open_database(url) as database:
        yield database


async def prefixes(db: Database) -> dict[str, str]:
    async with db.session() as session:
        return {row.prefix: row.key_id for row in (await session.exec(select(KeyPrefix))).all()}


async def test_a_new_secret_never_reuses_a_prefix_any_key_has_had(db: Database) -> None:
    draws = secrets_of("AAAAAA", "AAAAAA", "BBBBBB", "AAAAAA", "BBBBBB", "CCCCCC")
    keys = KeyService(db, make_secret=lambda: next(draws))
    first, _ = await keys.create_key(KeyCreate(name="first"))
    second, _ = await keys.create_key(KeyCreate(name="second"))  # AAAAAA is taken: drawn again
    rotated, secret = await keys.rotate_key(first.id)  # AAAAAA (its own former) and BBBBBB are taken
    assert (first.prefix, second.prefix, rotated.prefix) == ("sk-gw-AAAAAA", "sk-gw-BBBBBB", "sk-gw-CCCCCC")
    assert secret.startswith("sk-gw-CCCCCC")
    assert await prefixes(db) == {"sk-gw-AAAAAA": first.id, "sk-gw-BBBBBB": second.id, "sk-gw-CCCCCC": first.id}
    assert (await keys.get_key("sk-gw-AAAAAA")).id == first.id  # a former prefix still names the key
    assert (await keys.get_key("sk-gw-CCCCCC")).prefix == "sk-gw-CCCCCC"


def test_migration_gives_existing_keys_their_prefix(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    engine = create_engine(url)
    config = Config()
    config.set_main_option("script_location", str(storage_db._MIGRATIONS))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "0008")  # a database from before key_prefixes
    engine.dispose()
    with closing(sqlite3.connect(tmp_path / "old.db")) as raw, raw:
        old_keys = [("key_a", "sk-gw-aaaaaa", "2026-01-01"), ("key_b", "sk-gw-bbbbbb", "2026-01-02"),
                    ("key_c", "sk-gw-aaaaaa", "2026-01-03")]  # fmt: skip
        for key_id, prefix, created in old_keys:
            raw.execute(
                "INSERT INTO api_keys (id, name, key_hash, prefix, role, budget_period, metadata, created_at, "
                "updated_at) VALUES (?, 'k', ?, ?, 'member', 'monthly', '{}', ?, ?)",
                (key_id, "hash-" + key_id, prefix, created, created),
            )
    run_migrations(url)
    with closing(sqlite3.connect(tmp_path / "old.db")) as raw:
        rows = sorted(raw.execute("SELECT prefix, key_id FROM key_prefixes").fetchall())
    assert rows == [("sk-gw-aaaaaa", "key_a"), ("sk-gw-bbbbbb", "key_b")]  # a shared prefix stays the older key's
