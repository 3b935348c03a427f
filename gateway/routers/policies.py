"""/admin/policies: the policy set in force (sha256, files, guardrails) and POST /admin/policies/reload."""

from __future__ import annotations

import anyio.to_thread
from fastapi import APIRouter, Request

from gateway.audit.events import AuditEvent
from gateway.errors import InvalidRequest
from gateway.policy.loader import PolicyError, PolicySet
from gateway.policy.store import PolicyStore
from gateway.routers.admin import caller

router = APIRouter(prefix="/admin", tags=["admin"])


def describe(store: PolicyStore, policies: PolicySet) -> dict[str, object]:
    return {
        "sha256": policies.sha256,
        "files": list(policies.files),
        "last_error": store.last_error,
        "warnings": store.warnings(),
        "policies": [
            {
                "name": p.name,
                "source": p.source,
                "mode": p.mode,
                "guardrails": [
                    {"id": g.id, "stage": g.stage, "check": g.check_name, "action": g.action} for g in p.guardrails
                ],
            }
            for p in policies.policies
        ],
    }


@router.get("/policies")
async def get_policies(request: Request) -> dict[str, object]:
    services, _ = caller(request, "admin", "viewer")
    return describe(services.policies, services.policies.current)


@router.post("/policies/reload")
async def reload_policies(request: Request) -> dict[str, object]:
    """Loads the files again; a bad version is refused with its error and the set in force stays."""
    services, who = caller(request, "admin")
    store: PolicyStore = services.policies
    try:
        policies = await anyio.to_thread.run_sync(store.reload)
    except PolicyError as exc:
        raise InvalidRequest(f"The policies were not reloaded; the set in force is unchanged. {exc}") from None
    services.audit.record(
        AuditEvent.by(
            who,
            "policy.reloaded",
            subject="policies",
            policy_sha256=policies.sha256,
            outcome="done",
            details={"files": list(policies.files)},
        )
    )
    return describe(store, policies)
