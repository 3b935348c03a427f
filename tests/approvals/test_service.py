"""ApprovalService's state machine without the app: who may move a request, which moves are refused, what each
move stores, audits and announces, and expiry on a clock the test turns. The app-level flows (agents, SDK,
webhooks, two instances) are in the other files here; these run in milliseconds each."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import create_async_engine

from gateway.approvals.service import ApprovalService
from gateway.audit.events import AuditEvent
from gateway.calls.caller import KeyEntry, Principal
from gateway.errors import ApprovalNotFound, ApprovalRequired, Conflict, PermissionDenied, PolicyDenied
from gateway.storage.db import Database
from gateway.storage.tables import ApprovalRequest
from gateway.toolcalls.engine import ToolDecision, binding_hash
from gateway.toolcalls.rules import Approvers

SHA = "a" * 64
NEW_SHA = "b" * 64
START = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)

AGENT = Principal(key_id="key_agent", name="agent", role="member", team_id="team_ops")
PEER = Principal(key_id="key_peer", name="peer", role="member", team_id="team_ops")  # same team, not a decider
ALICE = Principal(key_id="key_alice", name="alice", role="approver")
BOB = Principal(key_id="key_bob", name="bob", role="approver")
ADMIN = Principal(key_id="key_admin", name="ops-admin", role="admin")
MASTER = Principal(key_id=None, name="master", role="admin")


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> datetime:
        return self.now


class Audit:
    def __init__(self) -> None:
        self.events: list[AuditEvent] = []

    def record(self, event: AuditEvent) -> None:
        self.events.append(event)


class Notifier:
    def __init__(self) -> None:
        self.sent: list[tuple[str, str, str]] = []

    def send(self, event: str, row: ApprovalRequest) -> None:
        self.sent.append((event, row.id, row.status))


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    # A file, so each transaction has its own connection as in production (one in-memory connection shared by every
    # session let two racing releases interleave inside one transaction and both count a row as moved).
    url = f"sqlite+aiosqlite:///{tmp_path / 'approvals.db'}"
    engine = create_async_engine(url)
    async with engine.begin() as connection:
        await connection.run_sync(ApprovalRequest.__table__.create)  # type: ignore[attr-defined]
    yield Database(url, engine)
    await engine.dispose()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def service(db: Database, clock: Clock) -> ApprovalService:
    return ApprovalService(db, Audit(), Notifier(), sweep_interval_s=0.01, clock=clock)  # type: ignore[arg-type]


def audit(service: ApprovalService) -> list[AuditEvent]:
    return service.audit.events  # type: ignore[attr-defined, no-any-return]


def sent(service: ApprovalService) -> list[tuple[str, str, str]]:
    return service.notifier.sent  # type: ignore[attr-defined, no-any-return]


def decision(
    *,
    call_id: str = "call_1",
    arguments: str = '{"amount":500}',
    roles: tuple[str, ...] = ("approver",),
    teams: tuple[str, ...] = (),
    expires_after_s: int | None = 60,
    on_timeout: str | None = None,
) -> ToolDecision:
    return ToolDecision(
        action="require_approval",
        rule_id="big-refunds",
        risk="high",
        tool_name="refund",
        call_id=call_id,
        canonical_arguments=arguments,
        policy="agents",
        message="Refunds above 100 need a human.",
        approvers=Approvers(roles=roles, teams=teams),  # type: ignore[arg-type]
        expires_after_s=expires_after_s,
        on_timeout=on_timeout,  # type: ignore[arg-type]
    )


async def held(
    service: ApprovalService, principal: Principal = AGENT, *, request_id: str = "req_1", **kwargs: object
) -> ApprovalRequest:
    made = decision(**kwargs)  # type: ignore[arg-type]
    return await service.create(
        made,
        arguments=made.canonical_arguments or "",
        principal=principal,
        model="gpt-4o-mini",
        request_id=request_id,
        policy_sha256=SHA,
    )


async def approved(service: ApprovalService, **kwargs: object) -> ApprovalRequest:
    row = await held(service, **kwargs)
    return await service.decide(row.id, ALICE, approve=True, comment="ok", policy_sha256=SHA)


# --- creating and reading ---------------------------------------------------------------------------------------


async def test_a_held_call_is_stored_pending_bound_to_call_policy_and_key(service: ApprovalService) -> None:
    row = await held(service)
    stored = await service.read(row.id)
    assert stored == row
    assert row.id.startswith("apr_") and len(row.id) == 28
    assert (row.status, row.tool_name, row.tool_call_id, row.arguments) == (
        "pending",
        "refund",
        "call_1",
        row.arguments,
    )
    assert row.binding_hash == binding_hash("refund", '{"amount":500}', SHA, "key_agent")
    assert (row.key_id, row.key_name, row.team_id, row.model, row.request_id) == (
        "key_agent",
        "agent",
        "team_ops",
        "gpt-4o-mini",
        "req_1",
    )
    assert (row.policy, row.policy_sha256, row.rule_id, row.risk) == ("agents", SHA, "big-refunds", "high")
    assert (row.reason, row.approver_roles, row.approver_teams, row.on_timeout) == (
        "Refunds above 100 need a human.",
        ["approver"],
        [],
        "deny",
    )
    assert (row.created_at, row.expires_at) == (START, START + timedelta(seconds=60))
    assert sent(service) == [("approval.created", row.id, "pending")]
    (event,) = audit(service)
    assert (event.actor, event.actor_role, event.action, event.subject, event.outcome) == (
        "key_agent",
        "member",
        "approval.created",
        row.id,
        "pending",
    )
    assert (event.reason, event.rule_id, event.risk, event.policy_sha256, event.request_id, event.model) == (
        "Refunds above 100 need a human.",
        "big-refunds",
        "high",
        SHA,
        "req_1",
        "gpt-4o-mini",
    )
    assert event.details == {
        "tool": "refund",
        "tool_call_id": "call_1",
        "binding_hash": row.binding_hash,
        "requested_by": "key_agent",
        "expires_at": row.expires_at.isoformat(),
    }


async def test_a_rule_without_expiry_holds_for_fifteen_minutes_and_team_approvers_are_kept(
    service: ApprovalService,
) -> None:
    row = await held(service, expires_after_s=None, teams=("team_fin",), roles=())
    assert row.expires_at == START + timedelta(minutes=15)
    assert (row.approver_roles, row.approver_teams) == ([], ["team_fin"])
    master = await held(service, MASTER, call_id="call_2")
    assert master.key_id == "master" and master.binding_hash == binding_hash("refund", '{"amount":500}', SHA, "master")


async def test_unknown_ids_and_strangers_get_the_same_not_found(service: ApprovalService) -> None:
    with pytest.raises(ApprovalNotFound, match=r"^No approval with id 'apr_nope'\.$"):
        await service.read("apr_nope")
    row = await held(service)
    with pytest.raises(ApprovalNotFound, match=rf"^No approval with id '{row.id}'\.$"):
        await service.get(row.id, PEER)  # a key of the same team that is neither requester nor approver
    for reader in (AGENT, ALICE, ADMIN, MASTER):
        assert (await service.get(row.id, reader)).id == row.id


async def test_team_approvers_are_its_approvers_and_admins_not_its_members(service: ApprovalService) -> None:
    row = await held(service, roles=(), teams=("team_fin",))
    fin_member = Principal(key_id="key_m", name="m", role="member", team_id="team_fin")
    with pytest.raises(ApprovalNotFound):
        await service.get(row.id, fin_member)
    with pytest.raises(ApprovalNotFound):  # an approver of no listed team may not even read it
        await service.decide(row.id, ALICE, approve=True, comment=None, policy_sha256=SHA)
    with pytest.raises(PermissionDenied) as refused:  # an admin reads every request, but decides only if named
        await service.decide(row.id, ADMIN, approve=True, comment=None, policy_sha256=SHA)
    assert refused.value.code == "not_an_approver"
    assert refused.value.message == f"Only the named approvers (team team_fin) may decide approval {row.id}."
    by_name = KeyEntry(
        id="key_n",
        name="n",
        prefix="gw_n",
        role="approver",
        team_id="team_9",
        team_name="team_fin",
        allowed_models=None,
        budgets=(),
        rates=(),
        expires_at=None,
        revoked=False,
    )
    named = Principal(key_id="key_n", name="n", role="approver", team_id="team_9", key=by_name)
    decided = await service.decide(row.id, named, approve=False, comment="no", policy_sha256=SHA)
    assert (decided.status, decided.decided_by) == ("denied", "key_n")
    other = await held(service, roles=(), teams=("team_fin",), call_id="call_2")
    ops_approver = Principal(key_id="key_oa", name="oa", role="approver", team_id="team_ops")
    with pytest.raises(ApprovalNotFound):  # a decider of another team
        await service.decide(other.id, ops_approver, approve=True, comment=None, policy_sha256=SHA)
    fin_admin = Principal(key_id="key_fa", name="fa", role="admin", team_id="team_fin")
    assert (await service.decide(other.id, fin_admin, approve=True, comment=None, policy_sha256=SHA)).status == (
        "approved"
    )


async def test_list_is_newest_first_filtered_by_who_may_read_and_status(service: ApprovalService, clock: Clock) -> None:
    first = await held(service, call_id="c1")
    clock.now += timedelta(seconds=1)
    second = await held(service, call_id="c2")
    clock.now += timedelta(seconds=1)
    peers = await held(service, PEER, call_id="c3")
    await service.decide(second.id, ALICE, approve=False, comment=None, policy_sha256=SHA)
    assert [r.id for r in await service.list(AGENT)] == [second.id, first.id]
    assert [r.id for r in await service.list(ALICE)] == [peers.id, second.id, first.id]
    assert [r.id for r in await service.list(ALICE, status="pending")] == [peers.id, first.id]
    assert [r.id for r in await service.list(ALICE, limit=1)] == [peers.id]


# --- decisions --------------------------------------------------------------------------------------------------


async def test_an_approval_records_who_decided_and_opens_a_release_window(
    service: ApprovalService, clock: Clock
) -> None:
    row = await held(service)
    clock.now += timedelta(seconds=20)
    done = await service.decide(row.id, ALICE, approve=True, comment="fine", policy_sha256=SHA)
    assert done == await service.read(row.id)
    assert (done.status, done.decided_at, done.decided_by, done.decided_by_name, done.comment) == (
        "approved",
        clock.now,
        "key_alice",
        "alice",
        "fine",
    )
    assert done.expires_at == clock.now + timedelta(seconds=60)  # the rule's window again, from the decision
    assert sent(service)[-1] == ("approval.approved", row.id, "approved")
    event = audit(service)[-1]
    assert (event.actor, event.action, event.outcome, event.reason) == (
        "key_alice",
        "approval.approved",
        "approved",
        "fine",
    )


async def test_a_denial_is_final(service: ApprovalService) -> None:
    row = await held(service)
    done = await service.decide(row.id, ALICE, approve=False, comment="too much", policy_sha256=NEW_SHA)
    assert (done.status, done.comment) == ("denied", "too much")  # a denial needs no current policy
    assert sent(service)[-1] == ("approval.denied", row.id, "denied")
    with pytest.raises(Conflict, match=rf"^Approval {row.id} is already denied; only a pending one can be decided\.$"):
        await service.decide(row.id, BOB, approve=True, comment=None, policy_sha256=SHA)


async def test_no_key_decides_its_own_call_even_an_approver(service: ApprovalService) -> None:
    row = await held(service, ALICE)
    with pytest.raises(PermissionDenied) as refused:
        await service.decide(row.id, ALICE, approve=True, comment=None, policy_sha256=SHA)
    assert refused.value.code == "self_approval"
    assert refused.value.message == (
        f"Approval {row.id} was requested by this key; a key can never decide its own call."
    )
    other = await held(service, roles=("approver",), teams=("team_fin",), call_id="call_2")
    with pytest.raises(PermissionDenied) as refused:
        await service.decide(other.id, ADMIN, approve=True, comment=None, policy_sha256=SHA)
    assert refused.value.message == (
        f"Only the named approvers (role approver, team team_fin) may decide approval {other.id}."
    )
    assert (await service.read(row.id)).status == (await service.read(other.id)).status == "pending"


async def test_approving_under_a_changed_policy_set_cancels_the_request(service: ApprovalService) -> None:
    row = await held(service)
    with pytest.raises(Conflict) as refused:
        await service.decide(row.id, ALICE, approve=True, comment=None, policy_sha256=NEW_SHA)
    assert refused.value.code == "approval_stale"
    assert refused.value.message == (
        f"The policy set changed since approval {row.id} was requested (then aaaaaaaaaaaa, now bbbbbbbbbbbb); "
        "it is cancelled, and the agent must ask again."
    )
    stored = await service.read(row.id)
    assert (stored.status, stored.decided_by, stored.comment) == (
        "cancelled",
        "system",
        "the policy set changed since the call was held",
    )
    assert sent(service)[-1] == ("approval.cancelled", row.id, "cancelled")


# --- cancelling ---------------------------------------------------------------------------------------------


async def test_the_requester_or_an_admin_cancels_an_open_request(service: ApprovalService) -> None:
    row = await held(service)
    with pytest.raises(PermissionDenied, match=rf"^Only an admin or the requesting key may cancel approval {row.id}\."):
        await service.cancel(row.id, ALICE, comment=None)
    done = await service.cancel(row.id, AGENT, comment="not needed")
    assert (done.status, done.decided_by, done.decided_by_name, done.comment) == (
        "cancelled",
        "key_agent",
        "agent",
        "not needed",
    )
    with pytest.raises(Conflict, match=rf"^Approval {row.id} is already cancelled; it can no longer be cancelled\.$"):
        await service.cancel(row.id, ADMIN, comment=None)
    open_one = await approved(service, call_id="call_2")
    assert (await service.cancel(open_one.id, ADMIN, comment=None)).status == "cancelled"


async def test_the_kill_switch_cancels_the_open_requests_of_one_key_or_of_all(service: ApprovalService) -> None:
    pending = await held(service, call_id="c1")
    ok = await approved(service, call_id="c2")
    denied = await held(service, call_id="c3")
    await service.decide(denied.id, ALICE, approve=False, comment=None, policy_sha256=SHA)
    peers = await held(service, PEER, call_id="c4")
    assert await service.cancel_all(ADMIN, key_id="key_agent", reason=None) == 2
    assert [(await service.read(r.id)).status for r in (pending, ok, denied, peers)] == [
        "cancelled",
        "cancelled",
        "denied",
        "pending",
    ]
    assert (await service.read(pending.id)).comment == "tool calls suspended"
    assert await service.cancel_all(ADMIN, key_id=None, reason="incident 7") == 1
    assert (await service.read(peers.id)).comment == "incident 7"


# --- expiry -------------------------------------------------------------------------------------------------


async def test_an_undecided_request_expires_denied_at_its_time(service: ApprovalService, clock: Clock) -> None:
    row = await held(service)
    clock.now = row.expires_at - timedelta(microseconds=1)
    assert (await service.read(row.id)).status == "pending"
    clock.now = row.expires_at  # due exactly at expires_at
    expired = await service.read(row.id)
    assert (expired.status, expired.decided_by, expired.decided_by_name, expired.decided_at) == (
        "expired",
        "system",
        "system",
        clock.now,
    )
    assert expired.comment == f"undecided at {row.expires_at.isoformat()}; the rule's on_timeout is deny"
    assert sent(service)[-1] == ("approval.expired", row.id, "expired")
    event = audit(service)[-1]
    assert (event.actor, event.action, event.reason) == ("system", "approval.expired", expired.comment)
    with pytest.raises(PolicyDenied, match=rf"^Tool call 'refund' \(approval {row.id}\) was expired: undecided at "):
        await service.release([row.id], AGENT, policy_sha256=SHA, request_id="req_2")


async def test_on_timeout_allow_approves_with_a_fresh_window(service: ApprovalService, clock: Clock) -> None:
    row = await held(service, on_timeout="allow")
    clock.now = row.expires_at + timedelta(seconds=5)
    done = await service.read(row.id)
    assert (done.status, done.decided_by, done.expires_at) == ("approved", "system", clock.now + timedelta(seconds=60))
    assert done.comment == f"undecided at {row.expires_at.isoformat()}; the rule's on_timeout is allow"
    (released,) = await service.release([row.id], AGENT, policy_sha256=SHA, request_id="req_2")
    assert released.status == "executed"


async def test_an_approval_not_released_in_its_window_expires(service: ApprovalService, clock: Clock) -> None:
    row = await approved(service)
    clock.now = row.expires_at
    done = await service.read(row.id)
    assert (done.status, done.comment) == ("expired", f"approved but not released before {row.expires_at.isoformat()}")
    assert done.decided_by == "key_alice"  # the decision stays on record
    assert sent(service)[-1] == ("approval.expired", row.id, "expired")


async def test_expiring_a_row_someone_else_already_moved_returns_the_stored_row(service: ApprovalService) -> None:
    row = await held(service)
    await service.decide(row.id, ALICE, approve=False, comment=None, policy_sha256=SHA)
    before = len(sent(service))
    assert (await service.expire(row)).status == "denied"  # the stale copy said pending
    assert len(sent(service)) == before


async def test_the_sweep_closes_due_requests_and_the_loop_runs_it(service: ApprovalService, clock: Clock) -> None:
    due = await held(service, call_id="c1")
    ok = await approved(service, call_id="c2")  # approved, never released: due at the same time
    clock.now += timedelta(seconds=30)
    later = await held(service, call_id="c3")
    assert await service.sweep() == 0
    clock.now = due.expires_at
    assert await service.sweep() == 2
    assert sorted(sent(service)[-2:]) == sorted(
        [("approval.expired", due.id, "expired"), ("approval.expired", ok.id, "expired")]
    )
    clock.now = later.expires_at
    task = asyncio.create_task(service.run())
    try:
        for _ in range(200):
            await asyncio.sleep(0.005)
            if sent(service)[-1][1] == later.id:
                break
    finally:
        task.cancel()
    assert sent(service)[-1] == ("approval.expired", later.id, "expired")


# --- waiting ------------------------------------------------------------------------------------------------


async def test_wait_returns_as_soon_as_the_request_is_decided(service: ApprovalService) -> None:
    row = await held(service)
    waiter = asyncio.create_task(service.wait(row.id, AGENT, timeout_s=5))
    await asyncio.sleep(0.01)
    assert not waiter.done()
    await service.decide(row.id, ALICE, approve=True, comment=None, policy_sha256=SHA)
    done = await asyncio.wait_for(waiter, 0.5)  # woken at once, not at the next 1 s poll
    assert done.status == "approved"


async def test_wait_gives_up_after_its_timeout_with_the_request_pending(service: ApprovalService) -> None:
    row = await held(service)
    loop = asyncio.get_running_loop()
    started = loop.time()
    assert (await service.wait(row.id, AGENT, timeout_s=0.05)).status == "pending"
    assert 0.05 <= loop.time() - started < 0.5
    with pytest.raises(ApprovalNotFound):
        await service.wait(row.id, PEER, timeout_s=0.05)


async def test_wait_ends_when_the_request_expires(service: ApprovalService, clock: Clock) -> None:
    row = await held(service)
    clock.now = row.expires_at
    assert (await asyncio.wait_for(service.wait(row.id, AGENT, timeout_s=5), 0.5)).status == "expired"


class CountingDatabase(Database):
    """The same database, counting the sessions opened on it: each read of an approval opens one."""

    def __init__(self, db: Database) -> None:
        super().__init__(db.url, db.engine)
        self.sessions = 0

    def session(self):  # type: ignore[no-untyped-def]
        self.sessions += 1
        return super().session()


async def test_wait_hears_of_expiry_at_the_expiry_time_not_a_poll_later(db: Database) -> None:
    loop = asyncio.get_running_loop()
    base = [START - timedelta(seconds=loop.time())]

    def clock() -> datetime:  # runs in real time
        return base[0] + timedelta(seconds=loop.time())

    service = ApprovalService(db, Audit(), Notifier(), clock=clock)  # type: ignore[arg-type]
    row = await held(service)
    base[0] += row.expires_at - timedelta(seconds=0.15) - clock()  # the request expires 0.15 s from now
    started = loop.time()
    assert (await service.wait(row.id, AGENT, timeout_s=5)).status == "expired"
    assert 0.1 < loop.time() - started < 0.6  # at its expiry, not at the next 1 s poll


async def test_wait_hears_of_another_instances_decision_within_a_poll_without_busy_reading(
    db: Database, clock: Clock
) -> None:
    counting = CountingDatabase(db)
    here = ApprovalService(counting, Audit(), Notifier(), clock=clock)  # type: ignore[arg-type]
    there = ApprovalService(db, Audit(), Notifier(), clock=clock)  # type: ignore[arg-type]
    row = await held(there)
    loop = asyncio.get_running_loop()
    started = loop.time()
    waiter = asyncio.create_task(here.wait(row.id, AGENT, timeout_s=1.8))
    await asyncio.sleep(0.05)
    await there.decide(row.id, ALICE, approve=True, comment=None, policy_sha256=SHA)  # no event reaches `here`
    assert (await waiter).status == "approved"
    assert 0.9 < loop.time() - started < 1.5  # heard at the 1 s poll, not at the 1.8 s timeout
    assert counting.sessions <= 3  # one read at the start and one per poll: no busy loop


# --- release ------------------------------------------------------------------------------------------------


async def test_an_approved_call_is_released_once_to_its_requester(service: ApprovalService, clock: Clock) -> None:
    row = await approved(service)
    clock.now += timedelta(seconds=3)
    with pytest.raises(PermissionDenied, match=rf"^Approval {row.id} was requested by another key; only that key"):
        await service.release([row.id], ALICE, policy_sha256=SHA, request_id="req_x")
    (done,) = await service.release([row.id], AGENT, policy_sha256=SHA, request_id="req_2")
    assert (done.status, done.executed_at, done.executed_request_id) == ("executed", clock.now, "req_2")
    assert done == await service.read(row.id)
    assert sent(service)[-1] == ("approval.executed", row.id, "executed")
    event = audit(service)[-1]
    assert (event.actor, event.action, event.request_id) == ("key_agent", "approval.executed", "req_2")
    with pytest.raises(Conflict) as again:
        await service.release([row.id], AGENT, policy_sha256=SHA, request_id="req_3")
    assert again.value.code == "approval_already_released"
    assert again.value.message == (
        f"Approval {row.id} was already released (request req_2); an approved call is released exactly once."
    )


async def test_two_racing_releases_release_once(service: ApprovalService) -> None:
    row = await approved(service)
    results = await asyncio.gather(
        *(service.release([row.id], AGENT, policy_sha256=SHA, request_id=f"req_{i}") for i in range(2)),
        return_exceptions=True,
    )
    (won,) = [r for r in results if isinstance(r, list)]
    (lost,) = [r for r in results if isinstance(r, Conflict)]
    assert won[0].status == "executed" and lost.code == "approval_already_released"
    assert [event for event, _, _ in sent(service)].count("approval.executed") == 1


async def test_release_refuses_pending_closed_and_stale_requests(service: ApprovalService) -> None:
    pending = await held(service, call_id="c1")
    with pytest.raises(ApprovalRequired) as refused:
        await service.release([pending.id], AGENT, policy_sha256=SHA, request_id="r")
    assert refused.value.message == (
        f"Tool call 'refund' (approval {pending.id}) is still pending; wait with "
        f"GET /v1/approvals/{pending.id}/wait and resume once it is approved."
    )
    denied = await held(service, call_id="c2")
    await service.decide(denied.id, ALICE, approve=False, comment="too much", policy_sha256=SHA)
    with pytest.raises(PolicyDenied, match=rf"^Tool call 'refund' \(approval {denied.id}\) was denied: too much\.$"):
        await service.release([denied.id], AGENT, policy_sha256=SHA, request_id="r")
    silent = await held(service, call_id="c3")
    await service.decide(silent.id, ALICE, approve=False, comment=None, policy_sha256=SHA)
    with pytest.raises(PolicyDenied, match=rf"^Tool call 'refund' \(approval {silent.id}\) was denied\.$"):
        await service.release([silent.id], AGENT, policy_sha256=SHA, request_id="r")
    ok = await approved(service, call_id="c4")
    with pytest.raises(Conflict) as stale:
        await service.release([ok.id], AGENT, policy_sha256=NEW_SHA, request_id="r")
    assert stale.value.code == "approval_stale"
    assert stale.value.message == (
        f"The policy set changed since approval {ok.id} was requested (then aaaaaaaaaaaa, now bbbbbbbbbbbb); "
        "the call needs a new approval."
    )
    with pytest.raises(ApprovalRequired):  # one bad id in a batch releases none
        await service.release([ok.id, pending.id], AGENT, policy_sha256=SHA, request_id="r")
    assert (await service.read(ok.id)).status == "approved"


async def test_was_released_answers_only_for_the_exact_call(service: ApprovalService, db: Database) -> None:
    row = await approved(service)
    args = '{"amount":500}'
    assert not await service.was_released("key_agent", "call_1", "refund", args)  # approved, not yet released
    await service.release([row.id], AGENT, policy_sha256=SHA, request_id="req_2")
    fresh = ApprovalService(db, Audit(), Notifier(), clock=service.now)  # type: ignore[arg-type]  # another instance
    for answering in (service, fresh, fresh):  # the releasing one remembers; the other reads, then remembers
        assert await answering.was_released("key_agent", "call_1", "refund", args)
        assert not await answering.was_released("key_agent", "call_1", "refund", '{"amount":501}')
        assert not await answering.was_released("key_agent", "call_1", "refund_all", args)
        assert not await answering.was_released("key_peer", "call_1", "refund", args)
        assert not await answering.was_released("key_agent", "call_2", "refund", args)


async def test_status_of_call_is_the_newest_request_for_that_call(service: ApprovalService, clock: Clock) -> None:
    assert await service.status_of_call("key_agent", "call_1") is None
    first = await held(service)
    await service.decide(first.id, ALICE, approve=False, comment=None, policy_sha256=SHA)
    clock.now += timedelta(seconds=1)
    second = await held(service)
    await held(service, PEER)
    found = await service.status_of_call("key_agent", "call_1")
    assert found is not None and (found.id, found.status) == (second.id, "pending")
