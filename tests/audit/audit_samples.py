"""Sample audit events and raw database access for the audit tests (imported by name: tests/audit has no __init__)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import text

from gateway.audit.chain import append, chain_transaction
from gateway.audit.events import AuditEvent, event_row
from gateway.storage.db import Database

T0 = datetime(2026, 1, 2, 3, 4, 5, 123456, tzinfo=UTC)


def event(n: int, **fields: object) -> AuditEvent:
    """The n-th of a series of policy decisions, a minute apart from T0."""
    values: dict[str, object] = {
        "occurred_at": T0 + timedelta(minutes=n),
        "actor": "key_1",
        "actor_role": "member",
        "action": "policy.decision",
        "subject": f"req_{n:04d}",
        "outcome": "deny" if n % 2 else "allow",
        "rule_id": "refund-limit",
        "policy_sha256": "ab" * 32,
        "request_id": f"req_{n:04d}",
        "details": {"tool": "refund", "amount": n * 10.5, "order": {"id": n, "tags": ["a", "b"]}},
        **fields,
    }
    return AuditEvent.model_validate(values)


async def chain(db: Database, events: list[AuditEvent]) -> int:
    """Append straight to the chain (what the shipper does per batch), for tests about the stored chain."""
    async with chain_transaction(db) as connection:
        return await append(connection, [event_row(e) for e in events])


async def execute(db: Database, sql: str, **params: object) -> None:
    """Raw SQL, as someone editing the database by hand would run it."""
    async with db.engine.begin() as connection:
        await connection.execute(text(sql), params)


async def column(db: Database, sql: str) -> list[object]:
    async with db.engine.connect() as connection:
        return list((await connection.execute(text(sql))).scalars())
