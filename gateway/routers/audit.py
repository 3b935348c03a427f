"""/admin/audit: list audit records by time, action and actor; /admin/audit/verify: check the hash chain."""

from __future__ import annotations

from fastapi import APIRouter, Query, Request

from gateway.audit.chain import VerifyResult, verify
from gateway.audit.records import list_records
from gateway.routers.admin import caller
from gateway.routers.usage import parse_instant

router = APIRouter(prefix="/admin", tags=["admin"])


@router.get("/audit")
async def get_audit(
    request: Request,
    start: str | None = Query(default=None, alias="from"),
    end: str | None = Query(default=None, alias="to"),
    action: str | None = Query(default=None, description="exact, or a prefix ending in * (approval.*)"),
    actor: str | None = None,
    before: int | None = Query(default=None, ge=1, description="seq: the page before this record"),
    limit: int = Query(default=100, ge=1, le=1000),
) -> dict[str, object]:
    """Newest first; a viewer of a team sees only what its team's keys did."""
    services, principal = caller(request, "admin", "viewer")
    team = principal.team_id if principal.role == "viewer" else None
    start_at, end_at = parse_instant(start, "from"), parse_instant(end, "to")
    records = await list_records(
        services.db,
        start=start_at,
        end=end_at,
        action=action,
        actor=actor,
        actor_team=team,
        before_seq=before,
        limit=limit + 1,
    )
    return {"object": "list", "data": [r.model_dump() for r in records[:limit]], "has_more": len(records) > limit}


@router.get("/audit/verify")
async def get_audit_verify(request: Request) -> VerifyResult:
    """Walks the whole chain (~15 s per million records): ok, or the first broken record and why."""
    services, _ = caller(request, "admin", "viewer")
    return await verify(services.db)
