"""/admin/teams and /admin/keys: create, list, read, update, rotate and revoke; admin role only."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from gateway.audit.events import AuditEvent
from gateway.calls.caller import Principal
from gateway.identity.auth import require_role
from gateway.schemas.admin import (
    KeyCreate,
    KeyOut,
    KeyUpdate,
    Limits,
    TeamCreate,
    TeamOut,
    TeamUpdate,
    unserved_models,
)
from gateway.services import Services
from gateway.storage.tables import ApiKey, Team
from gateway.usage.pricing import usd

router = APIRouter(prefix="/admin", tags=["admin"])


def caller(request: Request, *roles: str) -> tuple[Services, Principal]:
    services: Services = request.app.state.services
    principal = services.authenticator.authenticate(request.headers.get("authorization"))
    require_role(principal, *roles)
    return services, principal


async def changed(services: Services, who: Principal, action: str, subject: str, **details: object) -> None:
    """After every key or team write: audit it (spooled, no database wait) and refresh every instance's key cache."""
    services.audit.record(AuditEvent.by(who, action, subject=subject, outcome="done", details=details))
    await services.key_cache.changed()


def model_warnings(services: Services, spec: Limits) -> list[str]:
    return unserved_models(spec.models, {model.name for model in services.config.models})


def team_out(team: Team) -> TeamOut:
    budget = usd(team.budget_nanos) if team.budget_nanos is not None else None
    return TeamOut(
        id=team.id,
        name=team.name,
        budget=budget,
        period=team.budget_period,
        rpm=team.rpm,
        tpm=team.tpm,
        models=team.allowed_models,
        metadata=team.metadata_,
        created_at=team.created_at,
    )


def key_out(key: ApiKey, secret: str | None = None) -> KeyOut:
    return KeyOut(
        id=key.id,
        name=key.name,
        prefix=key.prefix,
        team_id=key.team_id,
        role=key.role,
        models=key.allowed_models,
        budget=usd(key.budget_nanos) if key.budget_nanos is not None else None,
        period=key.budget_period,
        rpm=key.rpm,
        tpm=key.tpm,
        expires_at=key.expires_at,
        revoked_at=key.revoked_at,
        metadata=key.metadata_,
        created_at=key.created_at,
        key=secret,
    )


@router.post("/teams", status_code=201)
async def create_team(spec: TeamCreate, request: Request) -> TeamOut:
    services, who = caller(request, "admin")
    team = await services.keys.create_team(spec)
    await changed(services, who, "team.created", team.id, name=team.name)
    return team_out(team).model_copy(update={"warnings": model_warnings(services, spec)})


@router.get("/teams")
async def list_teams(request: Request) -> dict[str, object]:
    services, _ = caller(request, "admin", "viewer")
    return {"object": "list", "data": [team_out(t) for t in await services.keys.list_teams()]}


@router.get("/teams/{ref}")
async def get_team(ref: str, request: Request) -> TeamOut:
    services, _ = caller(request, "admin", "viewer")
    return team_out(await services.keys.get_team(ref))


@router.patch("/teams/{ref}")
async def update_team(ref: str, spec: TeamUpdate, request: Request) -> TeamOut:
    services, who = caller(request, "admin")
    team = await services.keys.update_team(ref, spec)
    await changed(services, who, "team.updated", team.id, fields=sorted(spec.model_fields_set))
    return team_out(team).model_copy(update={"warnings": model_warnings(services, spec)})


@router.post("/keys", status_code=201)
async def create_key(spec: KeyCreate, request: Request) -> KeyOut:
    services, who = caller(request, "admin")
    key, secret = await services.keys.create_key(spec)
    await changed(services, who, "key.created", key.id, prefix=key.prefix, role=key.role, team_id=key.team_id)
    return key_out(key, secret).model_copy(update={"warnings": model_warnings(services, spec)})


@router.get("/keys")
async def list_keys(request: Request, team: str | None = None, include_revoked: bool = False) -> dict[str, object]:
    services, _ = caller(request, "admin", "viewer")
    keys = await services.keys.list_keys(team=team, include_revoked=include_revoked)
    return {"object": "list", "data": [key_out(k) for k in keys]}


@router.get("/keys/{ref}")
async def get_key(ref: str, request: Request) -> KeyOut:
    services, _ = caller(request, "admin", "viewer")
    return key_out(await services.keys.get_key(ref))


@router.patch("/keys/{ref}")
async def update_key(ref: str, spec: KeyUpdate, request: Request) -> KeyOut:
    services, who = caller(request, "admin")
    key = await services.keys.update_key(ref, spec)
    await changed(services, who, "key.updated", key.id, fields=sorted(spec.model_fields_set))
    return key_out(key).model_copy(update={"warnings": model_warnings(services, spec)})


@router.post("/keys/{ref}/rotate")
async def rotate_key(ref: str, request: Request) -> KeyOut:
    services, who = caller(request, "admin")
    key, secret = await services.keys.rotate_key(ref)
    await changed(services, who, "key.rotated", key.id, prefix=key.prefix)
    return key_out(key, secret)


@router.post("/keys/{ref}/revoke")
async def revoke_key(ref: str, request: Request) -> KeyOut:
    services, who = caller(request, "admin")
    return key_out(await revoke(services, who, ref))


@router.delete("/keys/{ref}")
async def delete_key(ref: str, request: Request) -> JSONResponse:
    """DELETE revokes: the row stays, so its usage keeps its owner."""
    services, who = caller(request, "admin")
    return JSONResponse(key_out(await revoke(services, who, ref)).model_dump(mode="json"))


async def revoke(services: Services, who: Principal, ref: str) -> ApiKey:
    """Revoking a revoked key is a no-op: the same answer (its first revoked_at), no second audit record."""
    key, revoked_now = await services.keys.revoke_key(ref)
    if revoked_now:
        await changed(services, who, "key.revoked", key.id, prefix=key.prefix)
    return key
