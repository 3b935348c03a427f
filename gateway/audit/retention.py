"""Retention: prune a prefix of the audit chain, leaving the checkpoint that verify starts from."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import delete, func, insert, select
from sqlalchemy.ext.asyncio import AsyncConnection

from gateway.audit.chain import (
    CHECKPOINTS,
    RECORDS,
    VerifyResult,
    append,
    chain_transaction,
    check,
    read_anchor,
    read_head,
)
from gateway.audit.events import SYSTEM, AuditEvent, event_row
from gateway.storage.db import Database

PRUNE_BATCH = 100_000  # records per transaction: verifying them holds the chain's lock for about 1.5 s


class AuditChainBrokenError(Exception):
    """The audit chain does not verify; pruning would delete the evidence, so it refuses."""

    def __init__(self, result: VerifyResult) -> None:
        super().__init__(
            f"The audit chain is broken at seq {result.broken_seq}: {result.reason}. Nothing was pruned; "
            "run `gateway audit verify` and keep an export of the records before pruning."
        )
        self.result = result


async def prune(
    db: Database,
    older_than: datetime,
    *,
    batch: int = PRUNE_BATCH,
    actor: str = SYSTEM,
    actor_role: str | None = SYSTEM,
    reason: str | None = None,
) -> int:
    """Delete the records before the first one that occurred at or after `older_than`; returns how many.

    Only a prefix of the chain goes: an old record shipped late, behind a newer one, waits until everything
    before it is old enough. Each transaction takes at most `batch` records: it verifies them and the record
    after them first (raises AuditChainBrokenError if broken: a prune must not destroy the evidence of
    tampering), then deletes them, stores the checkpoint (seq and hash of the last one deleted) and chains an
    `audit.pruned` event saying who pruned what. Verifying holds the chain's lock, so batches keep it short.
    """
    event = {"actor": actor, "actor_role": actor_role, "reason": reason}
    total = 0
    while True:
        async with chain_transaction(db) as connection:
            pruned = await _prune_batch(connection, older_than, batch, event)
        total += pruned
        if pruned < batch:
            return total


async def _prune_batch(connection: AsyncConnection, older_than: datetime, batch: int, event: dict[str, object]) -> int:
    kept_query = select(func.min(RECORDS.c.seq)).where(RECORDS.c.occurred_at >= older_than)
    first_kept: int | None = (await connection.execute(kept_query)).scalar()
    anchor = await read_anchor(connection)
    last = min(first_kept - 1 if first_kept is not None else (await read_head(connection)).seq, anchor.seq + batch)
    if last <= anchor.seq:
        return 0
    result = await check(connection, until_seq=last + 1)  # the next record proves the link to the cut
    if not result.ok:
        raise AuditChainBrokenError(result)
    cut_hash = (await connection.execute(select(RECORDS.c.hash).where(RECORDS.c.seq == last))).scalar_one()
    pruned = (await connection.execute(delete(RECORDS).where(RECORDS.c.seq <= last))).rowcount
    checkpoint = {"seq": last, "hash": cut_hash, "pruned": pruned, "created_at": datetime.now(UTC)}
    await connection.execute(insert(CHECKPOINTS), checkpoint)
    details = {"older_than": older_than.isoformat(), "first_seq": anchor.seq + 1, "last_seq": last, "count": pruned}
    pruned_event = AuditEvent.model_validate(
        {
            **event,
            "action": "audit.pruned",
            "subject": f"audit_records:{anchor.seq + 1}-{last}",
            "outcome": "pruned",
            "details": {**details, "checkpoint_hash": cut_hash},
        }
    )
    await append(connection, [event_row(pruned_event)])
    return pruned
