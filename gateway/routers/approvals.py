"""/v1/approvals (list, get, approve, deny, cancel, wait) and /admin/tool_suspensions (the kill switch)."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from gateway.approvals.killswitch import ALL, scope_of
from gateway.approvals.service import MAX_WAIT_S, STATUSES
from gateway.approvals.views import approval_json
from gateway.audit.events import AuditEvent
from gateway.calls.caller import Principal
from gateway.errors import InvalidRequest, NotFound
from gateway.identity.auth import require_role
from gateway.services import Services
from gateway.storage.tables import ToolSuspension

router = APIRouter(tags=["approvals"])
Status = Literal["pending", "approved", "denied", "expired", "cancelled", "executed"]
assert set(Status.__args__) == set(STATUSES)  # type: ignore[attr-defined]


class Decision(BaseModel):
    model_config = ConfigDict(extra="forbid")
    comment: str | None = Field(default=None, max_length=4000, description="Why; recorded in the audit log.")


class SuspensionCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    key_id: str | None = Field(
        default=None, description="Suspend this key's tool calls (its id or any prefix it has had) ..."
    )
    all: bool = Field(default=False, description="... or everyone's.")
    reason: str | None = Field(default=None, max_length=4000)


def caller(request: Request) -> tuple[Services, Principal]:
    services: Services = request.app.state.services
    return services, services.authenticator.authenticate(request.headers.get("authorization"))


@router.get("/v1/approvals")
async def list_approvals(
    request: Request, status: Status | None = None, limit: int = Query(default=100, ge=1, le=1000)
) -> dict[str, object]:
    """Newest first: everything for an admin; otherwise the caller's own requests and those it may decide."""
    services, principal = caller(request)
    rows = await services.approvals.list(principal, status=status, limit=limit)
    return {"object": "list", "data": [approval_json(row) for row in rows]}


@router.get("/v1/approvals/{approval_id}")
async def get_approval(approval_id: str, request: Request) -> dict[str, object]:
    services, principal = caller(request)
    return approval_json(await services.approvals.get(approval_id, principal))


@router.get("/v1/approvals/{approval_id}/wait")
async def wait_for_approval(
    approval_id: str, request: Request, wait_s: float = Query(default=30.0, ge=0, le=MAX_WAIT_S, alias="timeout")
) -> dict[str, object]:
    """Holds the request until the approval leaves pending or `timeout` seconds (at most 55) pass; then answers
    the approval as it stands (still `pending` after a timeout: wait again)."""
    services, principal = caller(request)
    return approval_json(await services.approvals.wait(approval_id, principal, wait_s))


@router.post("/v1/approvals/{approval_id}/approve")
async def approve(approval_id: str, request: Request, decision: Decision | None = None) -> dict[str, object]:
    services, principal = caller(request)
    comment = decision.comment if decision else None
    sha = services.policies.current.sha256
    return approval_json(
        await services.approvals.decide(approval_id, principal, approve=True, comment=comment, policy_sha256=sha)
    )


@router.post("/v1/approvals/{approval_id}/deny")
async def deny(approval_id: str, request: Request, decision: Decision | None = None) -> dict[str, object]:
    services, principal = caller(request)
    if decision is None or not (decision.comment or "").strip():
        raise InvalidRequest(
            "A denial needs a comment saying why; the agent and its user will read it.", param="comment"
        )
    return approval_json(
        await services.approvals.decide(
            approval_id,
            principal,
            approve=False,
            comment=decision.comment,
            policy_sha256=services.policies.current.sha256,
        )
    )


@router.post("/v1/approvals/{approval_id}/cancel")
async def cancel(approval_id: str, request: Request, decision: Decision | None = None) -> dict[str, object]:
    services, principal = caller(request)
    comment = decision.comment if decision else None
    return approval_json(await services.approvals.cancel(approval_id, principal, comment=comment))


def suspension_json(row: ToolSuspension) -> dict[str, object]:
    return {"scope": row.scope, "reason": row.reason, "suspended_by": row.suspended_by,
            "created_at": row.created_at.isoformat()}  # fmt: skip


@router.get("/admin/tool_suspensions")
async def list_suspensions(request: Request) -> dict[str, object]:
    services, principal = caller(request)
    require_role(principal, "admin", "viewer")
    await services.tool_switch.reload()
    return {"object": "list", "data": [suspension_json(row) for row in services.tool_switch.suspensions()]}


@router.post("/admin/tool_suspensions", status_code=201)
async def suspend(spec: SuspensionCreate, request: Request) -> dict[str, object]:
    """The kill switch: from now on the key's (or everyone's) tool calls are denied, and its open approvals
    (pending, or approved and not yet released) are cancelled."""
    services, principal = caller(request)
    require_role(principal, "admin")
    if spec.all == (spec.key_id is not None):
        raise InvalidRequest("Give either key_id (one key) or all: true (every key).", param="key_id")
    if spec.key_id is not None:
        spec = spec.model_copy(update={"key_id": (await services.keys.get_key(spec.key_id)).id})
    scope = ALL if spec.all else scope_of(spec.key_id)
    row = await services.tool_switch.suspend(scope, by=principal.key_id or "master", reason=spec.reason)
    cancelled = await services.approvals.cancel_all(principal, key_id=spec.key_id, reason=spec.reason)
    services.audit.record(AuditEvent.by(principal, "tools.suspended", subject=scope, outcome="suspended",
                                        reason=spec.reason, details={"cancelled_approvals": cancelled}))  # fmt: skip
    return {**suspension_json(row), "cancelled_approvals": cancelled}


@router.delete("/admin/tool_suspensions/{scope}")
async def lift(scope: str, request: Request) -> dict[str, object]:
    services, principal = caller(request)
    require_role(principal, "admin")
    if scope.startswith("key:"):  # key:<id or a prefix the key has had>, stored by id
        scope = scope_of((await services.keys.get_key(scope.removeprefix("key:"))).id)
    if not await services.tool_switch.lift(scope):
        raise NotFound(f"No tool suspension with scope {scope!r} (use 'all' or 'key:<key id>').")
    services.audit.record(AuditEvent.by(principal, "tools.resumed", subject=scope, outcome="resumed"))
    return {"scope": scope, "deleted": True}
