"""Tests for gateway.audit.log: spooled on record, chained once, never lost, one chain for several processes."""

from __future__ import annotations

import shutil
import signal
import sys
from datetime import UTC, datetime
from pathlib import Path

import anyio
import orjson
from anyio.streams.buffered import BufferedByteReceiveStream
from audit_samples import T0, chain, column, event
from sqlalchemy.exc import OperationalError
from sqlmodel import select

from gateway.audit.chain import append, chain_transaction, verify
from gateway.audit.config import AuditConfig
from gateway.audit.events import event_row
from gateway.audit.log import AuditLog
from gateway.storage.db import Database, open_database
from gateway.storage.tables import AuditRecord


async def stored(db: Database) -> list[AuditRecord]:
    async with db.session() as session:
        return list((await session.exec(select(AuditRecord).order_by(AuditRecord.seq))).all())


def spool_files(directory: Path) -> list[Path]:
    return sorted(directory.glob("audit-*.jsonl"))


async def test_record_spools_at_once_and_flush_chains_every_field(
    audit: AuditLog, db: Database, tmp_path: Path
) -> None:
    first = event(1, started_at=T0, actor_team="team_1", risk="high", model="gpt-test", input_sha256="cd" * 32)
    audit.record(first)
    audit.record(event(2, reason="amount 500 > 100"))
    [live] = spool_files(tmp_path / "spool")
    assert [orjson.loads(line)["subject"] for line in live.read_bytes().splitlines()] == ["req_0001", "req_0002"]
    assert await column(db, "SELECT COUNT(*) FROM audit_records") == [0]  # nothing waited for the database
    assert await audit.flush() == 2
    assert await audit.flush() == 0
    one, two = await stored(db)
    assert one.model_dump(exclude={"seq", "prev_hash", "hash"}) == {
        **first.model_dump(),
        "event_id": str(first.event_id),
    }
    assert (one.seq, two.seq, two.prev_hash, two.reason) == (1, 2, one.hash, "amount 500 > 100")
    assert (await verify(db)).ok


async def test_record_when_disabled_writes_nothing(db: Database, tmp_path: Path) -> None:
    log = AuditLog(db, tmp_path / "spool", config=AuditConfig(enabled=False))
    assert await log.open() == 0
    log.record(event(1))
    assert await log.flush() == 0
    await log.close()
    assert spool_files(tmp_path / "spool") == []
    assert await stored(db) == []


async def test_replayed_spool_file_does_not_chain_an_event_twice(audit: AuditLog, db: Database, tmp_path: Path) -> None:
    for n in range(1, 6):
        audit.record(event(n))
    assert await audit.flush() == 5
    [live] = spool_files(tmp_path / "spool")
    shutil.copy(live, tmp_path / "spool" / "audit-1-000000000000.jsonl")  # as if a crash left it unshipped
    restarted = AuditLog(db, tmp_path / "spool")
    assert await restarted.open() == 0  # ships the copy as a leftover: every event is already chained
    await restarted.close()
    assert spool_files(tmp_path / "spool") == [live]
    assert await column(db, "SELECT COUNT(*) FROM audit_records") == [5]
    assert (await verify(db)).ok


async def ship_everything(log: AuditLog) -> None:
    """flush() until it succeeds, retrying as run() does: SQLite under two writers can refuse a new connection."""
    while True:
        try:
            await log.flush()
            return
        except OperationalError:  # "database is locked" while the connection is set up (PRAGMA journal_mode)
            await anyio.sleep(0.005)


async def test_two_processes_shipping_at_once_build_one_chain(database_url: str, tmp_path: Path) -> None:
    # Two AuditLogs with their own engine and spool file stand for two gateway processes on one database.
    async with open_database(database_url) as db_a, open_database(database_url) as db_b:
        logs = [AuditLog(db, tmp_path / "spool", batch_size=7) for db in (db_a, db_b)]
        for log in logs:
            await log.open()
        for n in range(1, 121):
            logs[n % 2].record(event(n))
        async with anyio.create_task_group() as tasks:
            for log in logs:
                tasks.start_soon(ship_everything, log)
        for log in logs:
            await log.close()
        records = await stored(db_a)
        result = await verify(db_a, page_size=50)
    assert [r.seq for r in records] == list(range(1, 121))  # no duplicate seq, no gap
    assert sorted(r.subject or "" for r in records) == [f"req_{n:04d}" for n in range(1, 121)]
    assert (result.ok, result.checked) == (True, 120)


async def test_chain_lock_makes_a_second_writer_wait_for_the_first(database_url: str) -> None:
    async with open_database(database_url) as db_a, open_database(database_url) as db_b:
        async with chain_transaction(db_a) as first:
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(chain, db_b, [event(2)])  # another process: blocks on the lock
                await anyio.sleep(0.3)
                assert await column(db_b, "SELECT COUNT(*) FROM audit_records") == [0]
                await append(first, [event_row(event(1))])
                await first.commit()  # releases the lock: the waiting writer reads the new head
        assert await column(db_a, "SELECT subject FROM audit_records ORDER BY seq") == ["req_0001", "req_0002"]
        assert (await verify(db_a)).ok


WRITER = """
import asyncio
import sys
from pathlib import Path

from gateway.audit.events import AuditEvent
from gateway.audit.log import AuditLog
from gateway.storage.db import open_database


async def main() -> None:
    async with open_database(sys.argv[1]) as db:
        log = AuditLog(db, Path(sys.argv[2]))
        await log.open()
        for i in range(int(sys.argv[3])):
            log.record(AuditEvent(actor="key_1", action="policy.decision", subject=f"req_{i:04d}", outcome="deny"))
        with log._spool.path.open("ab") as torn:
            torn.write(b'{"actor": "key_1", "action": "poli')  # the kill cut this event short
        print("ready", flush=True)
        sys.stdin.read()  # alive, holding its spool's lock, until killed


asyncio.run(main())
"""


async def test_events_of_a_process_killed_with_sigkill_are_chained_by_the_next_start(
    database_url: str, db: Database, tmp_path: Path
) -> None:
    """Slow (~1.5 s): a real process imports the gateway and is SIGKILLed after recording."""
    directory = tmp_path / "spool"
    args = [sys.executable, "-c", WRITER, database_url, str(directory), "300"]
    async with await anyio.open_process(args) as writer:
        assert writer.stdout is not None
        with anyio.fail_after(20):
            assert await BufferedByteReceiveStream(writer.stdout).receive_until(b"\n", 100) == b"ready"
        writer.send_signal(signal.SIGKILL)
        assert await writer.wait() == -signal.SIGKILL
    assert len(spool_files(directory)) == 1
    assert await stored(db) == []  # the killed process shipped nothing
    restarted = AuditLog(db, directory)
    assert await restarted.open() == 300
    await restarted.close()
    records = await stored(db)
    assert [r.subject for r in records] == [f"req_{i:04d}" for i in range(300)]  # in order; the torn one dropped
    assert spool_files(directory) == []
    assert (await verify(db)).ok


async def test_run_ships_in_the_background_until_cancelled(db: Database, tmp_path: Path) -> None:
    log = AuditLog(db, tmp_path / "spool", interval_s=0.01)
    await log.open()
    async with anyio.create_task_group() as tasks:
        tasks.start_soon(log.run)
        log.record(event(1, occurred_at=datetime.now(UTC)))
        with anyio.fail_after(5):
            while not await stored(db):
                await anyio.sleep(0.01)
        tasks.cancel_scope.cancel()  # perhaps mid-transaction: chain_transaction finishes first, nothing hangs
    await log.close()
    assert [r.subject for r in await stored(db)] == ["req_0001"]
