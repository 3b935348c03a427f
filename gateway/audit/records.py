"""Reading audit_records: filtered lists for the admin API, and JSONL export of a time range."""

from __future__ import annotations

from datetime import datetime
from typing import BinaryIO

import orjson
from sqlalchemy import ColumnElement
from sqlmodel import col, select

from gateway.audit.chain import RECORDS, scan, snapshot
from gateway.storage.db import Database
from gateway.storage.tables import AuditRecord

_LINE = orjson.OPT_APPEND_NEWLINE  # timestamps as "+00:00", as the hash covers them


async def list_records(
    db: Database,
    *,
    start: datetime | None = None,
    end: datetime | None = None,
    action: str | None = None,
    actor: str | None = None,
    actor_team: str | None = None,
    before_seq: int | None = None,
    limit: int = 100,
) -> list[AuditRecord]:
    """Newest first. `action` ending in `*` matches a prefix (`approval.*`); `before_seq` pages backwards."""
    query = select(AuditRecord).where(*_time_range(start, end)).order_by(col(AuditRecord.seq).desc()).limit(limit)
    if action is not None:
        column = col(AuditRecord.action)
        query = query.where(
            column.startswith(action[:-1], autoescape=True) if action.endswith("*") else column == action
        )
    if actor is not None:
        query = query.where(AuditRecord.actor == actor)
    if actor_team is not None:
        query = query.where(AuditRecord.actor_team == actor_team)
    if before_seq is not None:
        query = query.where(col(AuditRecord.seq) < before_seq)
    async with db.session() as session:
        return list((await session.exec(query)).all())


async def export(db: Database, start: datetime | None, end: datetime | None, out: BinaryIO) -> int:
    """Write the records that occurred in [start, end) to `out` as JSON lines in seq order; returns how many.

    Each line carries seq, prev_hash and hash, so an export of a contiguous range can be checked on its own.
    """
    written = 0
    async with snapshot(db) as connection:
        async for row in scan(connection, *_time_range(start, end)):
            out.write(orjson.dumps(dict(row._mapping), option=_LINE))
            written += 1
    return written


def _time_range(start: datetime | None, end: datetime | None) -> list[ColumnElement[bool]]:
    where = []
    if start is not None:
        where.append(RECORDS.c.occurred_at >= start)
    if end is not None:
        where.append(RECORDS.c.occurred_at < end)
    return where
