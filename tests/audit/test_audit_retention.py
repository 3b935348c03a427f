"""Tests for gateway.audit.retention: pruning deletes a prefix only, and the chain still verifies after it."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest
from audit_samples import T0, chain, column, event, execute

from gateway.audit.chain import verify
from gateway.audit.config import AuditConfig
from gateway.audit.events import GENESIS_HASH
from gateway.audit.log import AuditLog
from gateway.audit.retention import AuditChainBrokenError, prune
from gateway.storage.db import Database


async def test_prune_deletes_the_old_prefix_and_verify_still_passes(db: Database) -> None:
    await chain(db, [event(n) for n in range(1, 11)])  # minute n after T0
    cut_hash = (await column(db, "SELECT hash FROM audit_records WHERE seq = 4"))[0]
    assert await prune(db, T0 + timedelta(minutes=5)) == 4
    assert await column(db, "SELECT seq FROM audit_records ORDER BY seq") == [5, 6, 7, 8, 9, 10, 11]
    assert await column(db, "SELECT hash FROM audit_checkpoints") == [cut_hash]
    assert await column(db, "SELECT action FROM audit_records WHERE seq = 11") == ["audit.pruned"]
    assert await column(db, "SELECT outcome FROM audit_records WHERE seq = 11") == ["pruned"]
    assert None not in await column(db, "SELECT created_at FROM audit_checkpoints")
    stored = (await column(db, "SELECT details FROM audit_records WHERE seq = 11"))[0]
    details = json.loads(stored) if isinstance(stored, str) else stored  # SQLite: text; PostgreSQL: JSON
    assert details == {
        "older_than": (T0 + timedelta(minutes=5)).isoformat(),
        "first_seq": 1,  # from the checkpoint before (genesis: seq 0) plus one
        "last_seq": 4,
        "count": 4,
        "checkpoint_hash": cut_hash,
    }
    result = await verify(db)
    assert (result.ok, result.first_seq, result.last_seq, result.checked) == (True, 5, 11, 7)
    assert await prune(db, T0 + timedelta(minutes=5)) == 0  # nothing more is old enough


async def test_prune_in_batches_chains_one_pruned_event_per_batch(db: Database) -> None:
    await chain(db, [event(n) for n in range(1, 8)])
    assert await prune(db, T0 + timedelta(minutes=6), batch=2) == 5  # seq 1-2, 3-4, 5
    assert await column(db, "SELECT subject FROM audit_records WHERE action = 'audit.pruned' ORDER BY seq") == [
        "audit_records:1-2",
        "audit_records:3-4",
        "audit_records:5-5",
    ]
    assert await column(db, "SELECT seq FROM audit_checkpoints ORDER BY seq") == [2, 4, 5]
    assert (await verify(db)).ok


async def test_prune_keeps_an_old_record_behind_a_newer_one(db: Database) -> None:
    # Shipped late (a leftover spool): seq 3 is old, but seq 2 is not, so only seq 1 may go.
    await chain(db, [event(1), event(20), event(2), event(30)])
    assert await prune(db, T0 + timedelta(minutes=10)) == 1
    assert await column(db, "SELECT seq FROM audit_records ORDER BY seq") == [2, 3, 4, 5]
    assert (await verify(db)).ok


async def test_prune_everything_then_new_events_chain_on_the_checkpoint(db: Database) -> None:
    await chain(db, [event(n) for n in range(1, 4)])
    assert await prune(db, T0 + timedelta(days=1)) == 3
    assert await prune(db, T0 + timedelta(days=1)) == 0  # the audit.pruned event (now) is kept
    await chain(db, [event(9)])
    assert await column(db, "SELECT seq FROM audit_records ORDER BY seq") == [4, 5]
    assert (await verify(db)).ok


async def test_prune_refuses_to_delete_a_broken_prefix(db: Database) -> None:
    await chain(db, [event(n) for n in range(1, 6)])
    await execute(db, "UPDATE audit_records SET outcome = 'escalated' WHERE seq = 2")
    with pytest.raises(AuditChainBrokenError, match="broken at seq 2: hash mismatch"):
        await prune(db, T0 + timedelta(minutes=4))
    assert await column(db, "SELECT COUNT(*) FROM audit_records") == [5]  # the evidence stays
    assert await column(db, "SELECT COUNT(*) FROM audit_checkpoints") == [0]


async def test_verify_detects_a_record_inserted_before_the_checkpoint(db: Database) -> None:
    await chain(db, [event(n) for n in range(1, 6)])
    await prune(db, T0 + timedelta(minutes=3))
    await execute(
        db,
        "INSERT INTO audit_records (seq, event_id, occurred_at, actor, action, details, prev_hash, hash) "
        "SELECT 1, 'forged', occurred_at, actor, action, details, :genesis, hash FROM audit_records WHERE seq = 3",
        genesis=GENESIS_HASH,
    )
    result = await verify(db)
    assert (result.ok, result.broken_seq) == (False, 1)
    assert result.reason == "seq 1 is at or before the prune checkpoint at seq 2: a record was inserted"


async def test_audit_log_prune_expired_uses_retention_days(db: Database, tmp_path: Path) -> None:
    log = AuditLog(db, tmp_path / "spool", config=AuditConfig(retention_days=30))
    await log.open()
    for n in (1, 2):
        log.record(event(n))
    log.record(event(3, occurred_at=T0 + timedelta(days=40)))
    await log.flush()
    await log.close()
    assert await log.prune_expired(now=T0 + timedelta(days=31)) == 2  # older than T0 + 1 day
    assert await column(db, "SELECT reason FROM audit_records WHERE action = 'audit.pruned'") == ["retention_days=30"]
    assert (await verify(db)).ok


def test_audit_config_defaults_to_a_year_and_refuses_unknown_fields() -> None:
    assert AuditConfig() == AuditConfig(enabled=True, retention_days=365)
    with pytest.raises(ValueError, match="retention"):
        AuditConfig(retention=30)  # type: ignore[call-arg]
    with pytest.raises(ValueError, match="greater than or equal to 1"):
        AuditConfig(retention_days=0)


@pytest.mark.parametrize(
    ("sql", "seq", "expected"),
    [
        # The last record the prune would delete (seq 3): an edit there must not vanish with it.
        ("UPDATE audit_records SET outcome = 'escalated' WHERE seq = 3", 3, "broken at seq 3: hash mismatch"),
        # The first record kept (seq 4) must link to the cut, or the checkpoint would anchor a broken chain.
        ("UPDATE audit_records SET prev_hash = :other WHERE seq = 4", 4, "broken at seq 4: prev_hash does not match"),
    ],
)
async def test_prune_checks_the_last_record_it_deletes_and_the_link_after_it(
    db: Database, sql: str, seq: int, expected: str
) -> None:
    await chain(db, [event(n) for n in range(1, 6)])
    await execute(db, sql, other="f" * 64)
    with pytest.raises(AuditChainBrokenError, match=expected) as caught:
        await prune(db, T0 + timedelta(minutes=4))  # seq 1-3 are old enough
    assert str(caught.value).endswith(
        ". Nothing was pruned; run `gateway audit verify` and keep an export of the records before pruning."
    )
    assert (caught.value.result.ok, caught.value.result.broken_seq) == (False, seq)
    assert await column(db, "SELECT COUNT(*) FROM audit_records") == [5]
    assert await column(db, "SELECT COUNT(*) FROM audit_checkpoints") == [0]


async def test_prune_checks_no_further_than_the_link_after_the_cut(db: Database) -> None:
    await chain(db, [event(n) for n in range(1, 7)])
    await execute(db, "UPDATE audit_records SET outcome = 'escalated' WHERE seq = 5")  # kept: verify's business
    assert await prune(db, T0 + timedelta(minutes=4)) == 3
    result = await verify(db)
    assert (result.ok, result.broken_seq) == (False, 5)
