"""The decision record of one call: its usage record by request id, waiting (bounded) while it is still spooled.

A call's record reaches the database through the spool and the shipper, within one shipping interval (0.5 s). A
reader asking right after the answer (the eval runner reading a call's decisions) must not be told "no such call":
the record of a call this process answered is shipped at once by flushing the live spool; one answered by another
process or instance is waited for, polling, up to the reader's bound.
"""

from __future__ import annotations

import logging

import anyio
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import select

from gateway.storage.db import Database
from gateway.storage.tables import UsageRecord
from gateway.usage.shipper import UsageShipper

log = logging.getLogger(__name__)
POLL_S = 0.05


async def read_call(db: Database, request_id: str) -> UsageRecord | None:
    async with db.session() as session:
        return (await session.exec(select(UsageRecord).where(UsageRecord.request_id == request_id))).first()


async def find_call(db: Database, shipper: UsageShipper, request_id: str, *, wait_s: float) -> UsageRecord | None:
    """The usage record of `request_id`, or None once `wait_s` has passed without it."""
    record = await read_call(db, request_id)
    if record is not None:
        return record
    deadline = anyio.current_time() + wait_s
    try:
        await shipper.flush()  # this process's records, once: in the database when it returns
    except SQLAlchemyError as exc:  # the shipper retries on its own; the reads below say what is there
        log.debug("flushing usage records for %s failed: %s", request_id, exc)
    while True:  # another process's records arrive with its shipper: poll, bounded
        record = await read_call(db, request_id)
        if record is not None or anyio.current_time() >= deadline:
            return record
        await anyio.sleep(min(POLL_S, max(deadline - anyio.current_time(), 0)))


def call_json(record: UsageRecord) -> dict[str, object]:
    """The record as /admin/calls/{request_id} answers it."""
    data = record.model_dump(mode="json", exclude={"id"})
    return {"object": "gateway.call", **data}
