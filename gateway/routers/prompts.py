"""/admin/prompts: create versions, list, show, move labels (rollback is a move back), diff."""

from __future__ import annotations

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from gateway.errors import InvalidRequest
from gateway.prompts.render import compile_prompt
from gateway.prompts.spec import LATEST, PromptSpec
from gateway.prompts.store import spec_of
from gateway.routers.admin import caller
from gateway.storage.tables import PromptVersion

router = APIRouter(prefix="/admin/prompts", tags=["prompts"])
READERS = ("admin", "member", "approver", "viewer")
WRITERS = ("admin", "member")  # protected labels (production by default) additionally need admin


class LabelMove(BaseModel):
    model_config = ConfigDict(extra="forbid")
    version: int = Field(ge=1)
    force: bool = Field(default=False, description="move a gated label without a passing eval run (admins only)")
    reason: str | None = Field(default=None, max_length=1000, description="why a forced move is forced (audited)")


def version_json(row: PromptVersion) -> dict[str, object]:
    spec = spec_of(row)
    return {
        "prompt_id": row.prompt_id,
        "version": row.version,
        "commit_message": row.commit_message,
        "content_sha256": row.content_sha256,
        "variables": sorted(compile_prompt(spec, row.version).variables),
        "created_by": row.created_by,
        "created_at": row.created_at.isoformat(),
        "spec": spec.model_dump(mode="json", exclude_none=True),
    }


@router.get("")
async def list_prompts(request: Request) -> dict[str, object]:
    services, _ = caller(request, *READERS)
    index = await services.prompts.index()
    data = [{"id": pid, "latest": labels.get(LATEST), "labels": labels} for pid, labels in sorted(index.items())]
    return {"object": "list", "data": data}


@router.post("", status_code=201)
async def create_version(spec: PromptSpec, request: Request, if_changed: bool = False) -> dict[str, object]:
    """A new immutable version (numbered from 1); with ?if_changed=true, nothing new when the content equals the
    latest version's (what `gateway prompts sync` uses)."""
    services, who = caller(request, *WRITERS)
    row, created = await services.prompts.create_version(spec, who, if_changed=if_changed)
    return {**version_json(row), "created": created}


@router.get("/{prompt_id}")
async def get_prompt(prompt_id: str, request: Request) -> dict[str, object]:
    services, _ = caller(request, *READERS)
    rows = await services.prompts.versions(prompt_id)
    labels = (await services.prompts.index()).get(prompt_id, {})
    versions = [{k: v for k, v in version_json(row).items() if k != "spec"} for row in rows]
    return {"id": prompt_id, "latest": rows[-1].version, "labels": labels, "versions": versions}


@router.get("/{prompt_id}/versions/{version}")
async def get_version(prompt_id: str, version: int, request: Request) -> dict[str, object]:
    services, _ = caller(request, *READERS)
    return version_json(await services.prompts.get_version(prompt_id, version))


@router.get("/{prompt_id}/labels/{label}")
async def get_label(prompt_id: str, label: str, request: Request) -> dict[str, object]:
    services, _ = caller(request, *READERS)
    compiled = await services.prompt_registry.resolve(prompt_id, label=label)
    return version_json(await services.prompts.get_version(prompt_id, compiled.version))


@router.put("/{prompt_id}/labels/{label}")
async def move_label(prompt_id: str, label: str, move: LabelMove, request: Request) -> dict[str, object]:
    """Points a label at a version; rolling back is moving it back. Protected labels: admins only. A gated label
    (config `prompts.gates`) needs a stored passing run of its suite against the version (409 eval_required), unless
    an admin forces the move with a reason."""
    services, who = caller(request, *WRITERS)
    if move.reason is not None and not move.force:
        raise InvalidRequest("reason goes with force: true (the reason of a forced move).", param="reason")
    force_reason = (move.reason or "") if move.force else None
    row, previous = await services.prompts.move_label(prompt_id, label, move.version, who, force_reason=force_reason)
    return {"prompt_id": prompt_id, "label": label, "version": row.version, "previous_version": previous,
            "updated_by": row.updated_by, "updated_at": row.updated_at.isoformat()}  # fmt: skip


@router.get("/{prompt_id}/diff")
async def diff(
    prompt_id: str, request: Request, old: int = Query(alias="from", ge=1), new: int = Query(alias="to", ge=1)
) -> dict[str, object]:
    services, _ = caller(request, *READERS)
    return {"prompt_id": prompt_id, "from": old, "to": new, "diff": await services.prompts.diff(prompt_id, old, new)}
