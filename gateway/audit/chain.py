"""The hash chain over audit_records: the serialised append, reading in seq order, and verify.

One global chain, however many gateway processes share the database: every append runs in a transaction that
first takes the chain's write lock (Postgres: a transaction-scoped advisory lock; SQLite: BEGIN IMMEDIATE, the
database's write lock), then reads the head (the last record, or the newest prune checkpoint, or the genesis
hash), then numbers and hashes the new records after it. The lock is released by the commit, so the next writer
reads the new head. `seq` is also the primary key: should two writers ever race, one insert fails, none forks.

What verify proves: no record between the checkpoint (or genesis) and the last record was edited, removed,
inserted or reordered since it was written. It cannot see the newest records being cut off the end, nor a
writer with database access rewriting the whole chain; keep `head_hash` of a verify (or an export) outside the
database to anchor those.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass

import anyio
from pydantic import BaseModel
from sqlalchemy import ColumnElement, Row, insert, select, text
from sqlalchemy.ext.asyncio import AsyncConnection

from gateway.audit.events import GENESIS_HASH, record_hash
from gateway.storage.db import Database
from gateway.storage.tables import AuditCheckpoint, AuditRecord

RECORDS = AuditRecord.__table__  # type: ignore[attr-defined]
CHECKPOINTS = AuditCheckpoint.__table__  # type: ignore[attr-defined]
PAGE_SIZE = 1000
TRANSACTION_TIMEOUT_S = 60.0
# Any constant unique to this lock among the database's advisory locks: b"gwaudit\0" as a big-endian int64.
_ADVISORY_LOCK_KEY = int.from_bytes(b"gwaudit\0", "big", signed=True)


@dataclass(frozen=True, slots=True)
class Head:
    """The end of the chain: the next record gets seq + 1 and prev_hash = hash."""

    seq: int
    hash: str


class VerifyResult(BaseModel):
    """What verify found: ok, or the first broken record's seq and why it is broken."""

    ok: bool
    checked: int  # records whose hash was recomputed and matched
    first_seq: int | None  # the first record verified; anchored by the checkpoint when records were pruned
    last_seq: int | None
    head_hash: str  # the last good hash: keep it elsewhere to detect a rewrite of everything up to it later
    broken_seq: int | None = None
    reason: str | None = None


@asynccontextmanager
async def chain_transaction(db: Database) -> AsyncIterator[AsyncConnection]:
    """A transaction holding the chain's write lock until it commits; rolled back (lock released) on error.

    Shielded from cancellation for up to TRANSACTION_TIMEOUT_S (then TimeoutError, an OSError): a shutdown
    lets it finish first, because cancelling an aiosqlite connection while SQLAlchemy releases it leaves a
    task that never ends and hangs the event loop's close (SQLAlchemy 2.1.9, aiosqlite 0.22.1).
    """
    with anyio.fail_after(TRANSACTION_TIMEOUT_S, shield=True):
        async with db.engine.connect() as connection:
            if connection.dialect.name == "sqlite":
                await connection.exec_driver_sql("BEGIN IMMEDIATE")  # waits up to busy_timeout for other writers
            else:
                await connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _ADVISORY_LOCK_KEY})
            yield connection
            await connection.commit()


@asynccontextmanager
async def snapshot(db: Database) -> AsyncIterator[AsyncConnection]:
    """A read-only transaction that sees one state of the chain across every page it reads.

    Without it, a prune committing between two pages would look like removed records.
    """
    async with db.engine.connect() as connection:
        if connection.dialect.name == "sqlite":
            await connection.exec_driver_sql("BEGIN")  # in WAL mode, reads in one transaction share a snapshot
        else:
            await connection.execution_options(isolation_level="REPEATABLE READ")
        yield connection
        await connection.rollback()


async def read_head(connection: AsyncConnection) -> Head:
    """The last record, else the newest checkpoint (everything was pruned), else genesis."""
    last = (
        await connection.execute(select(RECORDS.c.seq, RECORDS.c.hash).order_by(RECORDS.c.seq.desc()).limit(1))
    ).first()
    if last is not None:
        return Head(last.seq, last.hash)
    return await read_anchor(connection)


async def read_anchor(connection: AsyncConnection) -> Head:
    """Where the surviving chain starts: the newest checkpoint, or genesis if nothing was ever pruned."""
    query = select(CHECKPOINTS.c.seq, CHECKPOINTS.c.hash).order_by(CHECKPOINTS.c.seq.desc()).limit(1)
    checkpoint = (await connection.execute(query)).first()
    return Head(checkpoint.seq, checkpoint.hash) if checkpoint is not None else Head(0, GENESIS_HASH)


async def append(connection: AsyncConnection, rows: Sequence[Mapping[str, object]]) -> int:
    """Chain the rows whose event_id is not stored yet, in order, after the head; returns how many were new.

    Call it inside chain_transaction: the lock is what makes reading the head and appending after it atomic.
    """
    ids = [str(row["event_id"]) for row in rows]
    stored = set((await connection.execute(select(RECORDS.c.event_id).where(RECORDS.c.event_id.in_(ids)))).scalars())
    head = await read_head(connection)
    seq, prev = head.seq, head.hash
    chained = []
    for row in rows:
        if row["event_id"] in stored:
            continue  # replayed: shipped before a crash, or spooled twice
        stored.add(str(row["event_id"]))
        seq += 1
        digest = record_hash(prev, row, seq)
        chained.append({**row, "seq": seq, "prev_hash": prev, "hash": digest})
        prev = digest
    if chained:
        await connection.execute(insert(RECORDS), chained)
    return len(chained)


async def scan(
    connection: AsyncConnection, *where: ColumnElement[bool], page_size: int = PAGE_SIZE
) -> AsyncIterator[Row[tuple[object, ...]]]:
    """Every record matching `where`, in seq order, read a page at a time (never the whole table at once)."""
    after: int | None = None
    while True:
        query = select(RECORDS).where(*where).order_by(RECORDS.c.seq).limit(page_size)
        if after is not None:
            query = query.where(RECORDS.c.seq > after)
        page = (await connection.execute(query)).all()
        for row in page:
            yield row
        if len(page) < page_size:
            return
        after = page[-1].seq


async def verify(db: Database, *, page_size: int = PAGE_SIZE) -> VerifyResult:
    """Walk the whole chain from its anchor and recompute every hash; the first broken record is reported."""
    async with snapshot(db) as connection:
        return await check(connection, page_size=page_size)


async def check(
    connection: AsyncConnection, *, until_seq: int | None = None, page_size: int = PAGE_SIZE
) -> VerifyResult:
    """verify's walk on an open connection, optionally only up to `until_seq` (what prune is about to delete)."""
    anchor = await read_anchor(connection)
    expected, prev = anchor.seq + 1, anchor.hash
    checked, first = 0, None
    where = [RECORDS.c.seq <= until_seq] if until_seq is not None else []
    async for row in scan(connection, *where, page_size=page_size):
        reason = _broken(row, expected, prev, anchor)
        if reason is not None:
            last = expected - 1 if checked else None
            return VerifyResult(
                ok=False,
                checked=checked,
                first_seq=first,
                last_seq=last,
                head_hash=prev,
                broken_seq=row.seq,
                reason=reason,
            )
        first = row.seq if first is None else first
        checked, expected, prev = checked + 1, row.seq + 1, row.hash
    return VerifyResult(
        ok=True, checked=checked, first_seq=first, last_seq=expected - 1 if checked else None, head_hash=prev
    )


def _broken(row: Row[tuple[object, ...]], expected: int, prev: str, anchor: Head) -> str | None:
    """Why the record breaks the chain, or None: a wrong seq or prev_hash means records were removed or
    inserted before it; a hash that does not match its content means it was edited."""
    if row.seq < expected:  # only the first record can be: seq is unique and read in order
        return f"seq {row.seq} is at or before the prune checkpoint at seq {anchor.seq}: a record was inserted"
    if row.seq > expected:
        missing = f"record {expected} is" if row.seq == expected + 1 else f"records {expected}-{row.seq - 1} are"
        return f"seq gap: {missing} missing (removed)"
    if row.prev_hash != prev:
        return (
            "prev_hash does not match the previous record's hash: a record before it was removed, inserted or rewritten"
        )
    if record_hash(row.prev_hash, row._mapping, row.seq) != row.hash:
        return "hash mismatch: the record's content was edited after it was written"
    return None
