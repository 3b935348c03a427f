"""ApprovalService: tool calls held for a human; created, read, decided, expired and released, durably.

States, and who moves a request between them:

    pending ──approve (a named approver)──> approved ──release (the requesting key, once)──> executed
    pending ──deny (a named approver)─────> denied
    pending ──expiry──────────────────────> expired   (or approved by "system" when the rule says on_timeout: allow)
    approved ──not released within the rule's expires_after of the decision──> expired
    pending | approved ──cancel (an admin, the requesting key, the kill switch, a policy change)──> cancelled

Every move is one conditional UPDATE (`WHERE status IN (...)`), so two approvers, two instances or two resumes
racing cannot both win. The database row is the truth: an approval outlives restarts and is seen by every
instance. Each move is audited (who, why, with which policy version) and sent to the webhooks.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import secrets
from collections import OrderedDict
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, update
from sqlalchemy import select as core_select
from sqlmodel import col, select

from gateway.approvals.webhooks import Notifier
from gateway.audit.events import MASTER, AuditEvent
from gateway.audit.log import AuditLog
from gateway.calls.caller import Principal
from gateway.errors import ApprovalNotFound, ApprovalRequired, Conflict, PermissionDenied, PolicyDenied
from gateway.storage.db import Database
from gateway.storage.tables import ApprovalRequest
from gateway.toolcalls.engine import ToolDecision, binding_hash

log = logging.getLogger("gateway.approvals")
STATUSES = ("pending", "approved", "denied", "expired", "cancelled", "executed")
CLOSED = ("denied", "expired", "cancelled")
POLL_S = 1.0  # a waiter re-reads the row this often, to hear of decisions made on another instance
MAX_WAIT_S = 55.0  # no request is held open longer (proxies commonly cut idle requests at 60 s)
DECIDER_ROLES = ("approver", "admin")  # who, within a named team, may decide
SYSTEM_PRINCIPAL = Principal(key_id="system", name="system", role="system")


def requester_id(principal: Principal) -> str:
    return principal.key_id or MASTER


def may_decide(row: ApprovalRequest, principal: Principal) -> bool:
    """A named approver: the caller's role is listed on the request, or its team is and the caller is one of the
    team's deciders (role approver or admin): an agent's member key in the team cannot approve its peers' calls."""
    if principal.role in row.approver_roles:
        return True
    if principal.role not in DECIDER_ROLES:
        return False
    team_name = principal.key.team_name if principal.key else None
    return any(team is not None and team in row.approver_teams for team in (principal.team_id, team_name))


def may_read(row: ApprovalRequest, principal: Principal) -> bool:
    return principal.role == "admin" or row.key_id == requester_id(principal) or may_decide(row, principal)


class ApprovalService:
    def __init__(
        self,
        db: Database,
        audit: AuditLog,
        notifier: Notifier,
        *,
        sweep_interval_s: float = 1.0,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.db = db
        self.audit = audit
        self.notifier = notifier
        self.sweep_interval_s = sweep_interval_s
        self.now = clock
        self._moved: dict[str, asyncio.Event] = {}  # approval id -> set when it leaves pending here
        # (key, call id) -> (policy sha256, binding hash) of an executed approval
        self._released: OrderedDict[tuple[str, str], tuple[str, str]] = OrderedDict()

    # --- creating and reading -------------------------------------------------------------------------------

    async def create(
        self, decision: ToolDecision, *, arguments: str, principal: Principal, model: str, request_id: str,
        policy_sha256: str,
    ) -> ApprovalRequest:  # fmt: skip
        """A pending approval for a call the policy gated; raises ValueError for a call without canonical args."""
        requester = requester_id(principal)
        approvers = decision.approvers
        now = self.now()
        row = ApprovalRequest(
            id="apr_" + secrets.token_hex(12),
            status="pending",
            tool_name=decision.tool_name,
            tool_call_id=decision.call_id,
            arguments=arguments,
            canonical_arguments=decision.canonical_arguments or "",
            binding_hash=decision.binding_hash(policy_sha256, requester),
            key_id=requester,
            key_name=principal.name,
            team_id=principal.team_id,
            model=model,
            request_id=request_id,
            policy=decision.policy,
            policy_sha256=policy_sha256,
            rule_id=decision.rule_id,
            risk=decision.risk,
            reason=decision.message,
            approver_roles=list(approvers.roles) if approvers else [],
            approver_teams=list(approvers.teams) if approvers else [],
            on_timeout=decision.on_timeout or "deny",
            created_at=now,
            expires_at=now + timedelta(seconds=decision.expires_after_s or 900),
        )
        async with self.db.session() as session:
            session.add(row)
            await session.commit()
        self._announce(row, principal, "approval.created", reason=row.reason)
        return row

    async def read(self, approval_id: str) -> ApprovalRequest:
        """The row as stored, closed first if it expired; raises ApprovalNotFound (404)."""
        async with self.db.session() as session:
            row = await session.get(ApprovalRequest, approval_id)
        if row is None:
            raise ApprovalNotFound(f"No approval with id {approval_id!r}.")
        if row.status in ("pending", "approved") and row.expires_at <= self.now():
            row = await self.expire(row)
        return row

    async def get(self, approval_id: str, principal: Principal) -> ApprovalRequest:
        """As read(), for a caller who may see it: an admin, the requesting key or a named approver."""
        row = await self.read(approval_id)
        if not may_read(row, principal):
            raise ApprovalNotFound(f"No approval with id {approval_id!r}.")  # do not confirm that it exists
        return row

    async def list(self, principal: Principal, *, status: str | None = None, limit: int = 100) -> list[ApprovalRequest]:
        """Newest first, the ones the caller may see (reads at most 1,000 rows to filter them)."""
        query = select(ApprovalRequest).order_by(col(ApprovalRequest.created_at).desc()).limit(1000)
        if status is not None:
            query = query.where(ApprovalRequest.status == status)
        async with self.db.session() as session:
            rows = list((await session.exec(query)).all())
        return [row for row in rows if may_read(row, principal)][:limit]

    async def wait(self, approval_id: str, principal: Principal, timeout_s: float) -> ApprovalRequest:
        """Returns as soon as the approval leaves pending, or after timeout_s (at most 55 s) with it still pending."""
        row = await self.get(approval_id, principal)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + min(timeout_s, MAX_WAIT_S)
        while row.status == "pending":
            remaining = min(row.expires_at.timestamp() - self.now().timestamp(), deadline - loop.time())
            if deadline - loop.time() <= 0:
                break
            moved = self._moved.setdefault(approval_id, asyncio.Event())
            try:
                await asyncio.wait_for(moved.wait(), max(0.0, min(POLL_S, remaining, deadline - loop.time())))
            except TimeoutError:
                pass
            row = await self.read(approval_id)
        return row

    # --- decisions ------------------------------------------------------------------------------------------

    async def decide(
        self, approval_id: str, principal: Principal, *, approve: bool, comment: str | None, policy_sha256: str
    ) -> ApprovalRequest:
        """approve or deny; raises PermissionDenied (403) for self-approval or a caller who is not a named approver,
        Conflict (409) when the request is no longer pending or the policy set changed since it was requested
        (it could never be released: it is cancelled)."""
        row = await self.get(approval_id, principal)
        if row.key_id == requester_id(principal):
            raise PermissionDenied(
                f"Approval {approval_id} was requested by this key; a key can never decide its own call.",
                code="self_approval",
            )
        if not may_decide(row, principal):
            named = ", ".join([f"role {r}" for r in row.approver_roles] + [f"team {t}" for t in row.approver_teams])
            raise PermissionDenied(
                f"Only the named approvers ({named}) may decide approval {approval_id}.", code="not_an_approver"
            )
        if approve and row.status == "pending" and row.policy_sha256 != policy_sha256:
            await self._close(row, SYSTEM_PRINCIPAL, "the policy set changed since the call was held")
            raise Conflict(
                f"The policy set changed since approval {approval_id} was requested (then {row.policy_sha256[:12]}, "
                f"now {policy_sha256[:12]}); it is cancelled, and the agent must ask again.",
                code="approval_stale",
            )
        status = "approved" if approve else "denied"
        now = self.now()
        moved = await self._move(
            row, ("pending",), status, decided_at=now, decided_by=requester_id(principal),
            decided_by_name=principal.name, comment=comment, expires_at=now + (row.expires_at - row.created_at),
        )  # fmt: skip
        if moved is None:
            current = await self.read(approval_id)
            raise Conflict(f"Approval {approval_id} is already {current.status}; only a pending one can be decided.")
        self._announce(moved, principal, f"approval.{status}", reason=comment)
        return moved

    async def cancel(self, approval_id: str, principal: Principal, *, comment: str | None) -> ApprovalRequest:
        """An admin or the requesting key withdraws a pending or approved (not yet released) call."""
        row = await self.get(approval_id, principal)
        if principal.role != "admin" and row.key_id != requester_id(principal):
            raise PermissionDenied(f"Only an admin or the requesting key may cancel approval {approval_id}.")
        moved = await self._close(row, principal, comment)
        if moved is None:
            current = await self.read(approval_id)
            raise Conflict(f"Approval {approval_id} is already {current.status}; it can no longer be cancelled.")
        return moved

    async def cancel_all(self, principal: Principal, *, key_id: str | None, reason: str | None) -> int:
        """The kill switch: cancel every open (pending or approved, unreleased) call of one key, or of all keys."""
        query = select(ApprovalRequest).where(col(ApprovalRequest.status).in_(("pending", "approved")))
        if key_id is not None:
            query = query.where(ApprovalRequest.key_id == key_id)
        async with self.db.session() as session:
            rows = list((await session.exec(query)).all())
        cancelled = 0
        for row in rows:
            cancelled += await self._close(row, principal, reason or "tool calls suspended") is not None
        return cancelled

    async def _close(self, row: ApprovalRequest, principal: Principal, comment: str | None) -> ApprovalRequest | None:
        moved = await self._move(
            row, ("pending", "approved"), "cancelled", decided_at=self.now(), decided_by=requester_id(principal),
            decided_by_name=principal.name, comment=comment,
        )  # fmt: skip
        if moved is not None:
            self._announce(moved, principal, "approval.cancelled", reason=comment)
        return moved

    async def expire(self, row: ApprovalRequest) -> ApprovalRequest:
        """Closes a request past its expiry. Pending: expired, or approved (with a fresh release window) when its
        rule says on_timeout: allow. Approved but never released within its window: expired."""
        now = self.now()
        if row.status == "approved":
            status, values = "expired", {"comment": f"approved but not released before {row.expires_at.isoformat()}"}
        else:
            status = "approved" if row.on_timeout == "allow" else "expired"
            values = {
                "comment": f"undecided at {row.expires_at.isoformat()}; the rule's on_timeout is {row.on_timeout}",
                "decided_at": now, "decided_by": "system", "decided_by_name": "system",
                "expires_at": now + (row.expires_at - row.created_at),
            }  # fmt: skip
        moved = await self._move(row, (row.status,), status, **values)
        if moved is None:
            return await self.read(row.id)  # another instance (or a decision) got there first
        self._announce(moved, None, f"approval.{status}", reason=str(values["comment"]))
        return moved

    # --- release ---------------------------------------------------------------------------------------------

    async def release(self, approval_ids: list[str], principal: Principal, *, policy_sha256: str,
                      request_id: str) -> list[ApprovalRequest]:  # fmt: skip
        """approved -> executed, once, for the key that asked. Every id is checked before any is released, so a
        bad one releases none. Raises ApprovalNotFound, PermissionDenied (another key), ApprovalRequired (still
        pending), PolicyDenied (denied, expired, cancelled), Conflict (already released, policy set changed)."""
        rows = [await self.get(approval_id, principal) for approval_id in approval_ids]
        for row in rows:
            self._check_releasable(row, principal, policy_sha256)
        released = []
        for row in rows:
            moved = await self._move(
                row, ("approved",), "executed", executed_at=self.now(), executed_request_id=request_id
            )
            if moved is None:  # a racing resume or a cancellation won: say which
                self._check_releasable(await self.read(row.id), principal, policy_sha256)
                raise Conflict(f"Approval {row.id} changed while it was being released; try again.")
            self._remember(moved)
            self._announce(moved, principal, "approval.executed", request_id=request_id)
            released.append(moved)
        return released

    def _check_releasable(self, row: ApprovalRequest, principal: Principal, policy_sha256: str) -> None:
        if row.key_id != requester_id(principal):
            raise PermissionDenied(f"Approval {row.id} was requested by another key; only that key may resume it.")
        if row.status == "pending":
            raise ApprovalRequired(
                f"Tool call {row.tool_name!r} (approval {row.id}) is still pending; wait with "
                f"GET /v1/approvals/{row.id}/wait and resume once it is approved."
            )
        if row.status in CLOSED:
            why = f": {row.comment}" if row.comment else ""
            raise PolicyDenied(f"Tool call {row.tool_name!r} (approval {row.id}) was {row.status}{why}.")
        if row.status == "executed":
            raise Conflict(
                f"Approval {row.id} was already released (request {row.executed_request_id}); an approved call "
                "is released exactly once.",
                code="approval_already_released",
            )
        if binding_hash(row.tool_name, row.canonical_arguments, policy_sha256, row.key_id) != row.binding_hash:
            raise Conflict(
                f"The policy set changed since approval {row.id} was requested (then {row.policy_sha256[:12]}, "
                f"now {policy_sha256[:12]}); the call needs a new approval.",
                code="approval_stale",
            )

    async def was_released(self, key_id: str, tool_call_id: str, tool_name: str, canonical_arguments: str) -> bool:
        """Whether this key had exactly this call (id, tool, arguments) released by an approval: what a tool result
        may answer. Released is final, so positive answers are kept in memory."""

        def binds(policy_sha256: str, bound: str) -> bool:
            return binding_hash(tool_name, canonical_arguments, policy_sha256, key_id) == bound

        cached = self._released.get((key_id, tool_call_id))
        if cached is not None and binds(*cached):
            return True
        query = select(ApprovalRequest).where(
            ApprovalRequest.key_id == key_id,
            ApprovalRequest.tool_call_id == tool_call_id,
            ApprovalRequest.status == "executed",
        )
        async with self.db.session() as session:
            rows = list((await session.exec(query)).all())
        for row in rows:
            if binds(row.policy_sha256, row.binding_hash):
                self._remember(row)
                return True
        return False

    async def status_of_call(self, key_id: str, tool_call_id: str) -> ApprovalRequest | None:
        """The newest approval for this key's call id, if any (to say why a tool result is refused)."""
        query = (
            select(ApprovalRequest)
            .where(ApprovalRequest.key_id == key_id, ApprovalRequest.tool_call_id == tool_call_id)
            .order_by(col(ApprovalRequest.created_at).desc())
            .limit(1)
        )
        async with self.db.session() as session:
            return (await session.exec(query)).first()

    def _remember(self, row: ApprovalRequest) -> None:
        self._released[(row.key_id, row.tool_call_id)] = (row.policy_sha256, row.binding_hash)
        if len(self._released) > 10_000:
            self._released.popitem(last=False)

    # --- plumbing --------------------------------------------------------------------------------------------

    async def _move(
        self, row: ApprovalRequest, from_: tuple[str, ...], to: str, **values: object
    ) -> ApprovalRequest | None:
        """The one conditional write of a state move; None when the row was no longer in `from_`."""
        statement = (
            update(ApprovalRequest)
            .where(col(ApprovalRequest.id) == row.id, col(ApprovalRequest.status).in_(from_))
            .values(status=to, **values)
        )
        async with self.db.engine.begin() as connection:
            moved = (await connection.execute(statement)).rowcount == 1
        if not moved:
            return None
        event = self._moved.pop(row.id, None)
        if event is not None:
            event.set()
        return row.model_copy(update={"status": to, **values})

    def _announce(self, row: ApprovalRequest, principal: Principal | None, action: str, *, reason: str | None = None,
                  request_id: str | None = None) -> None:  # fmt: skip
        """Audit the transition (spooled, never lost) and queue the webhooks (off the request path)."""
        self.audit.record(
            AuditEvent.by(
                principal,
                action,
                subject=row.id,
                outcome=row.status,
                reason=reason,
                rule_id=row.rule_id,
                risk=row.risk,
                policy_sha256=row.policy_sha256,
                request_id=request_id or row.request_id,
                model=row.model,
                input_sha256=hashlib.sha256(row.canonical_arguments.encode()).hexdigest(),
                details={
                    "tool": row.tool_name,
                    "tool_call_id": row.tool_call_id,
                    "binding_hash": row.binding_hash,
                    "requested_by": row.key_id,
                    "expires_at": row.expires_at.isoformat(),
                },
            )
        )
        self.notifier.send(action, row)

    async def run(self) -> None:
        """Background loop: close expired requests promptly, so their audit records and webhooks go out on time."""
        while True:
            await asyncio.sleep(self.sweep_interval_s)
            try:
                await self.sweep()
            except Exception:  # the loop must outlive a database outage
                log.warning("could not sweep expired approvals", exc_info=True)

    async def sweep(self) -> int:
        due = (col(ApprovalRequest.status).in_(("pending", "approved")), col(ApprovalRequest.expires_at) <= self.now())
        # Every second, mostly finding nothing: a Core count first, the ORM session only when there is work.
        (count,) = await self.db.read_row(core_select(func.count()).select_from(ApprovalRequest).where(*due))
        if not count:
            return 0
        query = select(ApprovalRequest).where(*due).limit(100)
        async with self.db.session() as session:
            rows = list((await session.exec(query)).all())
        for row in rows:
            await self.expire(row)
        return len(rows)
