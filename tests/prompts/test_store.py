"""The prompt store and registry on SQLite and PostgreSQL: numbering under concurrent writers, idempotent creates,
label moves (racing ones included) and their audit records, and a second instance hearing of a move by Redis."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from redis.asyncio import Redis
from sqlmodel import select

from gateway.audit.log import AuditLog
from gateway.calls.caller import Principal
from gateway.errors import PermissionDenied, PromptNotFound
from gateway.prompts.registry import PromptRegistry
from gateway.prompts.spec import PromptSpec
from gateway.storage.db import Database, open_database
from gateway.storage.tables import AuditRecord, PromptLabel

ADMIN = Principal(key_id=None, name="master", role="admin")
MEMBER = Principal(key_id="key_member", name="author", role="member")
REDIS_URL = "redis://127.0.0.1:6379/0"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'gateway.db'}"
    return str(request.getfixturevalue("postgres_url"))


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[Database]:
    async with open_database(database_url) as database:
        yield database


@pytest.fixture
async def audit(db: Database, tmp_path: Path) -> AsyncIterator[AuditLog]:
    log = AuditLog(db, tmp_path / "spool")
    await log.open()
    yield log
    await log.close()


@pytest.fixture
async def registry(db: Database, audit: AuditLog) -> PromptRegistry:
    registry = PromptRegistry(db, audit, protected_labels=("production",))
    await registry.reload()
    return registry


def spec(text: str, prompt_id: str = "p", **extra: object) -> PromptSpec:
    return PromptSpec.model_validate({"id": prompt_id, "messages": [{"role": "system", "content": text}], **extra})


async def moves(db: Database, audit: AuditLog) -> list[tuple[str, str | None, object, object]]:
    await audit.flush()
    query = select(AuditRecord).where(AuditRecord.action == "prompt.label_moved").order_by(AuditRecord.seq)
    async with db.session() as session:
        rows = (await session.exec(query)).all()
    return [(r.subject, r.actor_role, r.details["from_version"], r.details["to_version"]) for r in rows]  # type: ignore[index]


async def test_versions_are_numbered_and_an_unchanged_create_is_a_no_op(registry: PromptRegistry) -> None:
    store = registry.store
    first, created = await store.create_version(spec("one", commit_message="a"), ADMIN, if_changed=True)
    assert (first.version, created) == (1, True)
    again, created = await store.create_version(spec("one", commit_message="other words"), ADMIN, if_changed=True)
    assert (again.version, created) == (1, False)  # the commit message is not content
    second, created = await store.create_version(spec("two"), MEMBER, if_changed=True)
    assert (second.version, created, second.created_by) == (2, True, "key_member")
    forced, created = await store.create_version(spec("two"), ADMIN)  # without if_changed: always a new version
    assert (forced.version, created) == (3, True)
    assert (await registry.resolve("p")).version == 3  # latest follows the newest
    assert [row.version for row in await store.versions("p")] == [1, 2, 3]


async def test_concurrent_writers_get_distinct_consecutive_numbers(
    registry: PromptRegistry, db: Database, audit: AuditLog
) -> None:
    """Writers on one instance take turns; two instances race on the unique (prompt_id, version) and retry."""
    other = PromptRegistry(db, audit, protected_labels=("production",))
    stores = (registry.store, other.store)
    rows = await asyncio.gather(*(stores[i % 2].create_version(spec(f"text {i}"), ADMIN) for i in range(6)))
    assert sorted(row.version for row, _ in rows) == [1, 2, 3, 4, 5, 6]
    contents = {row.version: row.spec["messages"][0]["content"] for row, _ in rows}  # type: ignore[index]
    assert sorted(contents.values()) == [f"text {i}" for i in range(6)]


async def test_label_moves_are_audited_with_who_and_from_where(
    registry: PromptRegistry, db: Database, audit: AuditLog
) -> None:
    store = registry.store
    for text in ("one", "two"):
        await store.create_version(spec(text), ADMIN)
    await store.move_label("p", "staging", 2, MEMBER)
    await store.move_label("p", "production", 2, ADMIN)
    _, previous = await store.move_label("p", "production", 1, ADMIN)  # rollback
    assert previous == 2
    with pytest.raises(PermissionDenied):
        await store.move_label("p", "production", 2, MEMBER)
    with pytest.raises(PromptNotFound):
        await store.move_label("p", "staging", 7, ADMIN)
    assert await moves(db, audit) == [
        ("p:staging", "member", None, 2),
        ("p:production", "admin", None, 2),
        ("p:production", "admin", 2, 1),
    ]
    assert (await registry.resolve("p", label="production")).version == 1
    assert (await registry.resolve("p", label="staging")).version == 2


async def test_a_first_move_racing_another_writer_moves_the_label_it_created(
    registry: PromptRegistry, db: Database, audit: AuditLog
) -> None:
    for text in ("one", "two"):
        await registry.store.create_version(spec(text), ADMIN)
    async with db.session() as other:  # another instance creates the label; its transaction is still open
        other.add(PromptLabel(prompt_id="p", label="canary", version=1, updated_by="other"))
        await other.flush()
        moving = asyncio.create_task(registry.store.move_label("p", "canary", 2, ADMIN))
        await asyncio.sleep(0.2)  # the move now waits on the uncommitted row
        await other.commit()
    row, previous = await moving
    assert (row.version, previous) == (2, 1)
    assert await moves(db, audit) == [("p:canary", "admin", 1, 2)]


async def test_the_change_stamp_moves_on_every_label_move(registry: PromptRegistry) -> None:
    store = registry.store
    for text in ("one", "two"):
        await store.create_version(spec(text), ADMIN)
    stamps = [await store.version_stamp()]
    for version in (2, 1, 2):
        await store.move_label("p", "staging", version, ADMIN)
        stamps.append(await store.version_stamp())
    assert len(set(stamps)) == len(stamps)


async def test_a_move_reaches_another_instance_through_redis_before_any_poll(
    registry: PromptRegistry, db: Database, audit: AuditLog
) -> None:
    """Two registries on one database, the poll loops not running: only the Redis notice can carry the move."""
    async with Redis.from_url(REDIS_URL) as redis_a, Redis.from_url(REDIS_URL) as redis_b:
        a = PromptRegistry(db, audit, protected_labels=("production",), redis=redis_a)
        b = PromptRegistry(db, audit, protected_labels=("production",), redis=redis_b)
        await a.reload()
        await b.reload()
        listening = asyncio.create_task(b.feed.listen())
        try:
            async with asyncio.timeout(2):
                while (await redis_a.pubsub_numsub(b.feed.channel))[0][1] < 1:
                    await asyncio.sleep(0.01)  # b is subscribed
            await a.store.create_version(spec("one"), ADMIN)
            await a.store.create_version(spec("two"), ADMIN)
            await a.store.move_label("p", "production", 1, ADMIN)
            async with asyncio.timeout(2):
                while (await resolved(b)) != 1:
                    await asyncio.sleep(0.01)
            await a.store.move_label("p", "production", 2, ADMIN)
            async with asyncio.timeout(2):
                while (await resolved(b)) != 2:
                    await asyncio.sleep(0.01)
        finally:
            listening.cancel()
            with pytest.raises(asyncio.CancelledError):
                await listening


async def resolved(registry: PromptRegistry) -> int:
    try:
        return (await registry.resolve("p", label="production")).version
    except PromptNotFound:
        return 0
