"""/admin/calls/{request_id}: one call's decision record (decisions, tokens, cost, status, prompt, key, model)."""

from __future__ import annotations

from fastapi import APIRouter, Query, Request

from gateway.calls.caller import Principal
from gateway.errors import CallNotFound
from gateway.routers.admin import caller
from gateway.storage.tables import UsageRecord
from gateway.usage.calls import call_json, find_call

router = APIRouter(prefix="/admin", tags=["admin"])


def may_read(principal: Principal, record: UsageRecord) -> bool:
    """Admins read every call; a viewer every call, or its team's when it has one; any other key its own calls."""
    if principal.role == "admin":
        return True
    if principal.role == "viewer":
        return principal.team_id is None or principal.team_id == record.team_id
    return principal.key_id is not None and principal.key_id == record.key_id


@router.get("/calls/{request_id}")
async def get_call(
    request_id: str,
    request: Request,
    wait_ms: int = Query(default=1000, ge=0, le=10_000, description="how long to wait for a call still spooled"),
) -> dict[str, object]:
    """The usage record of the call answered with this x-request-id. A call this instance answered is found at
    once; one answered by another instance is waited for (its shipper ships within 0.5 s) up to `wait_ms`."""
    services, principal = caller(request, "admin", "viewer", "member", "approver")
    record = await find_call(services.db, services.shipper, request_id, wait_s=wait_ms / 1000)
    if record is None or not may_read(principal, record):
        raise CallNotFound(f"No call {request_id!r} (its x-request-id) is recorded.", param="request_id")
    return call_json(record)
