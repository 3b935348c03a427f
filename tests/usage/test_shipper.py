"""Tests for gateway.usage.shipper against real SQLite and PostgreSQL: no record lost, none counted twice."""

from __future__ import annotations

import logging
import signal
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import anyio
import orjson
import psycopg
import pytest
from anyio.streams.buffered import BufferedByteReceiveStream
from psycopg import sql
from sqlalchemy import delete, make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import create_async_engine
from sqlmodel import select

from gateway.storage.db import Database, open_database, run_migrations
from gateway.storage.tables import UsageRecord
from gateway.usage.insert import statement_pages
from gateway.usage.shipper import REJECTED_FILE, UsageShipper
from gateway.usage.spool import UsageSpool

POSTGRES_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


def create_postgres_database() -> str:
    name = f"gateway_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return f"postgresql://postgres@127.0.0.1:5432/{name}"


def drop_postgres_database(url: str) -> None:
    with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as admin:
        name = sql.Identifier(make_url(url).database or "")
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(name))


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One migrated database per module (migrating one per test would double the time); `db` empties it."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('shipper')}/gateway.db"
    else:
        url = create_postgres_database()
    run_migrations(url)
    yield url
    if request.param == "postgres":
        drop_postgres_database(url)


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[Database]:
    async with open_database(database_url) as database:
        async with database.session() as session:
            await session.exec(delete(UsageRecord))
            await session.commit()
        yield database


@pytest.fixture
def spool(tmp_path: Path) -> Iterator[UsageSpool]:
    spool = UsageSpool(tmp_path / "spool")
    spool.open()
    yield spool
    spool.close()


def record(request_id: str, **fields: object) -> dict[str, object]:
    return {
        "request_id": request_id,
        "key_id": "key_1",
        "team_id": "team_1",
        "model": "gpt-test",
        "upstream_model": "gpt-4o-mini",
        "prompt_tokens": 7,
        "completion_tokens": 2,
        "cached_tokens": 1,
        "cost_nanos": 1_200_000,
        "latency_ms": 120.5,
        "overhead_ms": 1.5,
        "status_code": 200,
        "stream": False,
        "error_code": None,
        "created_at": datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
        **fields,
    }


async def stored(db: Database) -> list[UsageRecord]:
    async with db.session() as session:
        return list((await session.exec(select(UsageRecord).order_by(UsageRecord.request_id))).all())


async def stored_ids(db: Database) -> list[str]:
    return [row.request_id for row in await stored(db)]


async def stored_count_is(db: Database, count: int) -> bool:
    return len(await stored(db)) == count


async def has_logged(caplog: pytest.LogCaptureFixture, text: str) -> bool:
    return any(text in record.getMessage() for record in caplog.records)


def spool_files(directory: Path) -> list[str]:
    return sorted(path.name for path in directory.glob("usage-*.jsonl"))


async def eventually(check: Callable[[], Awaitable[bool]], timeout_s: float = 5.0) -> None:
    with anyio.fail_after(timeout_s):
        while not await check():
            await anyio.sleep(0.01)


async def test_shipper_flush_inserts_each_request_once(db: Database, spool: UsageSpool) -> None:
    shipper = UsageShipper(db, spool)
    spool.append(record("req_1"))
    spool.append(record("req_2", key_id=None, status_code=502, error_code="provider_error", stream=True))
    spool.append(record("req_1"))  # replayed: the same request spooled twice
    spool.append(record("req_3", created_at="2026-01-02T03:04:05"))  # no offset: taken as UTC
    assert await shipper.flush() == 3
    assert await shipper.flush() == 0  # nothing new
    restarted = UsageShipper(db, spool)  # a fresh shipper starts at offset 0: ships every line again
    assert await restarted.flush() == 0
    first, second, third = await stored(db)
    assert (first.request_id, first.key_id, first.team_id, first.model) == ("req_1", "key_1", "team_1", "gpt-test")
    assert (first.prompt_tokens, first.completion_tokens, first.cached_tokens) == (7, 2, 1)
    assert (first.cost_nanos, first.cost_usd) == (1_200_000, 0.0012)
    assert first.created_at == datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert (second.key_id, second.status_code, second.error_code, second.stream) == (None, 502, "provider_error", True)
    assert third.created_at == datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


async def test_shipper_stores_a_record_exactly_as_the_orm_does(db: Database, spool: UsageSpool) -> None:
    decisions = [{"rule": "pii-input", "stage": "input", "action": "redact", "kinds": ["email"]}]
    line = record("req_shipped", decisions=decisions, stream=True, created_at="2026-03-04T05:06:07.123456+02:00")
    spool.append(line)
    assert await UsageShipper(db, spool).flush() == 1
    orm = dict(line, request_id="req_orm", created_at=datetime(2026, 3, 4, 3, 6, 7, 123456, tzinfo=UTC))
    orm["cost_usd"] = orm["cost_nanos"] / 1e9
    async with db.session() as session:
        session.add(UsageRecord(**orm))
        await session.commit()
    columns = [c for c in UsageRecord.__table__.columns.keys() if c not in ("id", "request_id")]  # type: ignore[attr-defined]
    async with db.engine.connect() as connection:  # the values as the database holds them, no ORM in between
        rows = (
            await connection.exec_driver_sql(f"SELECT {', '.join(columns)} FROM usage_records ORDER BY request_id")
        ).all()
    assert len(rows) == 2 and rows[0] == rows[1]
    assert (await stored(db))[1].decisions == decisions


async def test_shipper_flush_ships_only_complete_lines(db: Database, spool: UsageSpool) -> None:
    shipper = UsageShipper(db, spool)
    line = orjson.dumps(record("req_2")) + b"\n"
    spool.append(record("req_1"))
    with spool.path.open("ab") as file:
        file.write(line[:40])  # a record still being written
        file.flush()
        assert await shipper.flush() == 1
        file.write(line[40:])
    assert await shipper.flush() == 1
    assert await stored_ids(db) == ["req_1", "req_2"]


WRITER = """
import sys
from pathlib import Path

from gateway.usage.spool import UsageSpool

spool = UsageSpool(Path(sys.argv[1]))
spool.open()
for i in range(int(sys.argv[2])):
    spool.append({"request_id": f"req_{i:04d}", "model": "gpt-test", "latency_ms": 1.0, "overhead_ms": 0.5,
                  "status_code": 200, "stream": False, "cost_nanos": 5, "created_at": "2026-01-02T03:04:05Z"})
with spool.path.open("ab") as torn:
    torn.write(b'{"request_id": "req_torn", "model": "gpt-')  # the crash cut this record short
print("ready", flush=True)
sys.stdin.read()  # alive, holding its lock, until killed
"""


async def test_ship_leftovers_skips_a_live_process_and_ships_it_once_killed(db: Database, tmp_path: Path) -> None:
    directory = tmp_path / "spool"
    shipper = UsageShipper(db, UsageSpool(directory), batch_size=100)
    # 300 records (~45 kB) would not need a thread; 600 make the shipper read in one and insert 6 batches.
    async with await anyio.open_process([sys.executable, "-c", WRITER, str(directory), "600"]) as writer:
        assert writer.stdout is not None
        with anyio.fail_after(10):
            assert await BufferedByteReceiveStream(writer.stdout).receive_until(b"\n", 100) == b"ready"
        [name] = spool_files(directory)
        path = directory / name
        assert await shipper.ship_leftovers() == 0  # its process is alive and holds the lock
        assert path.exists()
        writer.send_signal(signal.SIGKILL)
        assert await writer.wait() == -signal.SIGKILL
    assert await shipper.ship_leftovers() == 600
    assert not path.exists()
    assert await shipper.ship_leftovers() == 0
    ids = await stored_ids(db)
    assert ids == [f"req_{i:04d}" for i in range(600)]  # the torn req_torn is not among them


def allow_connections(url: str, allowed: bool) -> None:
    with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as admin:
        statement = sql.SQL("ALTER DATABASE {} ALLOW_CONNECTIONS {}")
        admin.execute(statement.format(sql.Identifier(make_url(url).database or ""), sql.Literal(allowed)))


async def test_ship_leftovers_leaves_this_process_file_live_and_locked(db: Database, spool: UsageSpool) -> None:
    shipper = UsageShipper(db, spool)
    spool.append(record("req_1"))
    assert await shipper.ship_leftovers() == 0
    assert spool_files(spool.directory) == [spool.path.name]
    other = UsageShipper(db, UsageSpool(spool.directory))  # another process would see it locked too
    assert await other.ship_leftovers() == 0
    assert await shipper.flush() == 1


@pytest.fixture
def unreachable_db(database_url: str, tmp_path: Path) -> Iterator[tuple[Database, Callable[[], None]]]:
    """An empty Database that refuses every connection until the returned function is called."""
    if database_url.startswith("sqlite"):
        url = f"sqlite:///{tmp_path}/later/gateway.db"  # the folder is missing: SQLite cannot open the file

        def reopen() -> None:
            run_migrations(url)  # creates the folder and the tables

        yield Database(url, create_async_engine(make_url(url).set(drivername="sqlite+aiosqlite"))), reopen
        return
    with psycopg.connect(database_url, autocommit=True) as connection:
        connection.execute("DELETE FROM usage_records")
    allow_connections(database_url, False)  # not even a superuser may connect now
    engine = create_async_engine(make_url(database_url).set(drivername="postgresql+psycopg"))
    yield Database(database_url, engine), lambda: allow_connections(database_url, True)
    allow_connections(database_url, True)


async def test_shipper_database_down_keeps_records_and_ships_them_once_back(
    unreachable_db: tuple[Database, Callable[[], None]], spool: UsageSpool, caplog: pytest.LogCaptureFixture
) -> None:
    db, reopen = unreachable_db
    shipper = UsageShipper(db, spool, interval_s=0.01)
    spool.append(record("req_1"))
    spool.append(record("req_2"))
    with pytest.raises(OperationalError):
        await shipper.flush()
    caplog.set_level(logging.WARNING, logger="gateway.usage.shipper")
    async with anyio.create_task_group() as tasks:
        tasks.start_soon(shipper.run)
        await eventually(lambda: has_logged(caplog, "failed"))
        spool.append(record("req_3"))  # appended during the outage
        await anyio.to_thread.run_sync(reopen)
        await eventually(lambda: stored_count_is(db, 3))
        tasks.cancel_scope.cancel()
    assert await stored_ids(db) == ["req_1", "req_2", "req_3"]
    messages = [r.getMessage() for r in caplog.records if r.name == "gateway.usage.shipper"]
    assert len(messages) == 2  # one warning per outage, however many intervals it lasts
    assert messages[0].startswith("Shipping usage records failed; they stay spooled")
    assert messages[1].startswith("Shipping usage records works again")
    await db.close()


async def test_shipper_rotates_a_fully_shipped_file(db: Database, tmp_path: Path) -> None:
    spool = UsageSpool(tmp_path)
    spool.open()
    shipper = UsageShipper(db, spool, rotate_bytes=1)
    first = spool.path
    spool.append(record("req_1"))
    assert await shipper.flush() == 1
    assert not first.exists()
    assert spool.path != first
    spool.append(record("req_2"))
    assert await shipper.flush() == 1
    await shipper.close()
    assert spool_files(tmp_path) == []  # close deleted the last, fully shipped file
    assert await stored_ids(db) == ["req_1", "req_2"]


async def test_shipper_sets_aside_records_it_cannot_store(db: Database, spool: UsageSpool) -> None:
    shipper = UsageShipper(db, spool, batch_size=10)
    spool.append(record("req_1"))
    with spool.path.open("ab") as file:
        file.write(b"not json\n")
    spool.append({"request_id": "req_no_model"})
    spool.append(record("req_int64", prompt_tokens=2**63))  # no database stores it
    spool.append(record("req_int32", prompt_tokens=2**40))  # Postgres INTEGER refuses it, SQLite stores it
    spool.append(record("req_2"))
    refused_by_postgres = db.engine.dialect.name == "postgresql"
    assert await shipper.flush() == (2 if refused_by_postgres else 3)
    expected = ["req_1", "req_2"] if refused_by_postgres else ["req_1", "req_2", "req_int32"]
    assert await stored_ids(db) == expected
    rejected = {}
    for line in (spool.directory / REJECTED_FILE).read_bytes().splitlines():
        entry = orjson.loads(line)
        name = "not json" if entry["line"] == "not json" else orjson.loads(entry["line"])["request_id"]
        rejected[name] = entry["reason"]
    assert set(rejected) == {"not json", "req_no_model", "req_int64"} | (
        {"req_int32"} if refused_by_postgres else set()
    )
    assert rejected["not json"].startswith("line: Invalid JSON")
    assert rejected["req_no_model"].startswith("model: Field required; latency_ms: Field required")
    assert rejected["req_int64"] == "prompt_tokens: Input should be less than 9223372036854775808"
    if refused_by_postgres:
        assert "out of range" in rejected["req_int32"]
    assert await shipper.flush() == 0  # nothing is retried or set aside twice
    assert len((spool.directory / REJECTED_FILE).read_bytes().splitlines()) == len(rejected)


@pytest.mark.parametrize(
    ("rows", "pages"),
    [(0, []), (1, [1]), (5, [4, 1]), (64, [64]), (100, [64, 32, 4]), (1000, [64] * 15 + [32, 8])],
)
def test_statement_pages_bound_the_statement_shapes(rows: int, pages: list[int]) -> None:
    # Every distinct page length is a distinct prepared statement that sqlite3 caches per connection.
    sliced = list(statement_pages(list(range(rows))))
    assert [len(page) for page in sliced] == pages
    assert [item for page in sliced for item in page] == list(range(rows))
