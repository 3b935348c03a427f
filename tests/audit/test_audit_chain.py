"""Tests for gateway.audit.chain and the hashed record shape: a chain verifies; edits, removals, inserts do not."""

from __future__ import annotations

import asyncio
import hashlib
from datetime import datetime, timedelta
from uuid import UUID

import anyio
import pytest
from audit_samples import T0, chain, column, event, execute

from gateway.audit.chain import append, chain_transaction, check, snapshot, verify
from gateway.audit.events import GENESIS_HASH, REDACTED, AuditEvent, canonical_json, event_row, record_hash
from gateway.audit.retention import prune
from gateway.calls.caller import Principal
from gateway.storage.db import Database


def test_record_hash_of_a_fixed_event_never_changes() -> None:
    # Records already stored are verified with this code: any change to the hashed bytes breaks every chain.
    fixed = event(1, event_id=UUID("00000000-0000-4000-8000-000000000001"))
    canonical = (
        b'{"action":"policy.decision","actor":"key_1","actor_role":"member",'
        b'"details":{"amount":10.5,"order":{"id":1,"tags":["a","b"]},"tool":"refund"},'
        b'"event_id":"00000000-0000-4000-8000-000000000001",'
        b'"occurred_at":"2026-01-02T03:05:05.123456+00:00","outcome":"deny","policy_sha256":"' + b"ab" * 32 + b'",'
        b'"request_id":"req_0001","rule_id":"refund-limit","seq":1,"subject":"req_0001"}'
    )  # null fields left out: a nullable field added later does not change the hash of older records
    assert canonical_json(event_row(fixed), 1) == canonical
    assert record_hash(GENESIS_HASH, event_row(fixed), 1) == hashlib.sha256(b"0" * 64 + canonical).hexdigest()
    assert record_hash(GENESIS_HASH, event_row(fixed), 1).startswith("07253a3bb4d8")


def test_audit_event_naive_time_is_utc_and_secret_details_are_redacted() -> None:
    e = AuditEvent(
        actor="master",
        action="key.created",
        occurred_at=datetime(2026, 1, 2, 3, 4, 5),
        details={"name": "ci", "api_key": "sk-live-123", "headers": [{"Authorization": "Bearer x"}], "tokens": 3},
    )
    assert e.occurred_at == datetime(2026, 1, 2, 3, 4, 5, tzinfo=T0.tzinfo)
    assert e.details == {"name": "ci", "api_key": REDACTED, "headers": [{"Authorization": REDACTED}], "tokens": 3}


def test_audit_event_by_principal_names_key_master_and_system() -> None:
    member = Principal(key_id="key_9", name="bot", role="approver", team_id="team_1")
    assert AuditEvent.by(member, "approval.approved", reason="ok").model_dump(
        include={"actor", "actor_role", "actor_team", "reason"}
    ) == {"actor": "key_9", "actor_role": "approver", "actor_team": "team_1", "reason": "ok"}
    assert AuditEvent.by(Principal(key_id=None, name="master", role="admin"), "key.revoked").actor == "master"
    assert AuditEvent.by(None, "approval.expired").actor == "system"


@pytest.mark.parametrize("action", ["", "policy", "Policy.Decision", "policy..decision"])
def test_audit_event_malformed_action_is_refused(action: str) -> None:
    with pytest.raises(ValueError, match="action"):
        AuditEvent(actor="system", action=action)


async def test_chain_of_events_verifies_across_pages(db: Database) -> None:
    assert await chain(db, [event(n) for n in range(1, 11)]) == 10
    assert await chain(db, [event(n) for n in range(11, 26)]) == 15
    result = await verify(db, page_size=7)
    assert (result.ok, result.checked, result.first_seq, result.last_seq) == (True, 25, 1, 25)
    assert result.head_hash == (await column(db, "SELECT hash FROM audit_records WHERE seq = 25"))[0]
    assert await column(db, "SELECT prev_hash FROM audit_records WHERE seq = 1") == [GENESIS_HASH]


async def test_verify_empty_chain_is_ok(db: Database) -> None:
    result = await verify(db)
    assert (result.ok, result.checked, result.last_seq, result.head_hash) == (True, 0, None, GENESIS_HASH)


async def test_chain_append_skips_event_ids_already_stored(db: Database) -> None:
    events = [event(n) for n in range(1, 6)]
    assert await chain(db, events[:3]) == 3
    assert await chain(db, [events[2], events[3], events[3], events[4]]) == 2  # replayed and repeated
    assert await column(db, "SELECT seq FROM audit_records ORDER BY seq") == [1, 2, 3, 4, 5]
    assert (await verify(db)).ok


def json_literal(db: Database) -> str:
    return "CAST(:value AS JSON)" if db.engine.dialect.name == "postgresql" else ":value"


@pytest.mark.parametrize(
    ("column_name", "value"),
    [("details", '{"tool": "refund", "amount": 1}'), ("outcome", "allow"), ("actor", "key_2")],
)
async def test_verify_record_edited_in_the_database_is_named_by_seq(db: Database, column_name: str, value: str) -> None:
    await chain(db, [event(n) for n in range(1, 11)])
    literal = json_literal(db) if column_name == "details" else ":value"
    await execute(db, f"UPDATE audit_records SET {column_name} = {literal} WHERE seq = 7", value=value)
    result = await verify(db, page_size=4)
    assert (result.ok, result.broken_seq, result.checked) == (False, 7, 6)
    assert result.reason == "hash mismatch: the record's content was edited after it was written"


async def test_verify_edited_and_rehashed_record_breaks_the_next_link(db: Database) -> None:
    await chain(db, [event(n) for n in range(1, 11)])
    await execute(db, "UPDATE audit_records SET hash = :forged WHERE seq = 4", forged="f" * 64)
    result = await verify(db)
    assert (result.ok, result.broken_seq) == (False, 4)  # its own hash no longer matches its content
    await execute(db, "UPDATE audit_records SET prev_hash = :forged WHERE seq = 5", forged="f" * 64)
    await execute(db, "DELETE FROM audit_records WHERE seq = 4")
    result = await verify(db)
    assert (result.broken_seq, result.reason) == (5, "seq gap: record 4 is missing (removed)")


async def test_verify_deleted_middle_record_is_reported_as_removed(db: Database) -> None:
    await chain(db, [event(n) for n in range(1, 11)])
    await execute(db, "DELETE FROM audit_records WHERE seq IN (5, 6)")
    result = await verify(db)
    assert (result.ok, result.broken_seq, result.checked, result.last_seq) == (False, 7, 4, 4)
    assert result.reason == "seq gap: records 5-6 are missing (removed)"


async def test_verify_deleted_record_with_later_ones_renumbered_breaks_on_prev_hash(db: Database) -> None:
    await chain(db, [event(n) for n in range(1, 11)])
    await execute(db, "DELETE FROM audit_records WHERE seq = 5")
    for seq in range(6, 11):  # closing the gap, as a careful forger would
        await execute(db, "UPDATE audit_records SET seq = :new WHERE seq = :old", new=seq - 1, old=seq)
    result = await verify(db)
    assert (result.ok, result.broken_seq) == (False, 5)
    assert result.reason is not None and result.reason.startswith("prev_hash does not match the previous record's")


async def test_verify_passes_after_json_details_round_trip_the_database(db: Database) -> None:
    # The hash is computed before the insert and recomputed from what the database returns: both must agree.
    details = {
        "floats": [0.1, 1e-7, 1e16, -0.0, 123456.789],
        "ints": [0, -1, 2**53 + 1, 2**63 - 1],
        "text": 'Zürich ✓ 東京 "quoted" \\ back\nslash',
        "nested": {"empty": {}, "list": [], "none": None, "bool": [True, False]},
    }
    await chain(db, [event(1, details=details, reason="ünïcode", started_at=T0)])
    result = await verify(db)
    assert (result.ok, result.checked) == (True, 1)


async def test_verify_sees_one_state_while_others_append_and_prune(db: Database) -> None:
    """verify and export read inside `snapshot`: writes committed meanwhile (an append, a prune of the prefix
    being read) are not seen, so a prune between two pages cannot look like removed records."""
    await chain(db, [event(n) for n in range(1, 6)])
    async with snapshot(db) as connection:
        before = await check(connection, page_size=2)
        await chain(db, [event(n) for n in range(6, 9)])
        assert await prune(db, T0 + timedelta(minutes=4)) == 3
        during = await check(connection, page_size=2)
    assert before == during
    assert (during.ok, during.first_seq, during.last_seq, during.checked) == (True, 1, 5, 5)
    after = await verify(db, page_size=2)
    assert (after.ok, after.first_seq, after.last_seq) == (True, 4, 9)  # 6-8 appended, 9 the audit.pruned event


async def test_append_cancelled_inside_the_locked_transaction_still_commits(db: Database) -> None:
    """A shutdown cancelling a writer that holds the chain's lock lets it finish (and commit) first."""
    holding = anyio.Event()

    async def writer() -> None:
        async with chain_transaction(db) as connection:
            await append(connection, [event_row(event(1))])
            holding.set()
            await anyio.sleep(0.05)  # still inside the transaction when the cancellation arrives
            await append(connection, [event_row(event(2))])

    async with anyio.create_task_group() as group:
        group.start_soon(writer)
        await holding.wait()
        group.cancel_scope.cancel()

    assert await column(db, "SELECT seq FROM audit_records ORDER BY seq") == [1, 2]
    assert await chain(db, [event(3)]) == 1  # and the lock was released
    assert (await verify(db)).ok


async def test_concurrent_appends_take_turns_and_the_chain_stays_whole(db: Database) -> None:
    """Writers serialise on the chain's lock (Postgres: an advisory lock; SQLite: BEGIN IMMEDIATE): each reads
    the head the previous one left, so none fails on a taken seq and none forks the chain."""
    added = await asyncio.gather(*(chain(db, [event(n)]) for n in range(1, 9)))
    assert added == [1] * 8
    assert await column(db, "SELECT seq FROM audit_records ORDER BY seq") == list(range(1, 9))
    assert (await verify(db)).ok
