"""/admin/evals/runs: store an eval run's canonical result, list runs, read one."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Query, Request

from gateway.routers.admin import caller

router = APIRouter(prefix="/admin/evals", tags=["evals"])
READERS = ("admin", "viewer")  # runs hold every team's case outputs: read like usage and audit
WRITERS = ("admin", "member")  # the eval runner's key stores its runs; viewers only read


@router.post("/runs", status_code=201)
async def create_run(request: Request, result: dict[str, object]) -> dict[str, object]:
    """Stores a `gateway-eval-result/1` (what `gateway eval run` writes); the same result again is a no-op, another
    one under a stored run_id a 409. Answers the run's summary."""
    services, _ = caller(request, *WRITERS)
    saved = await services.eval_runs.save(result)
    return await services.eval_runs.describe(saved.run_id)


@router.get("/runs")
async def list_runs(
    request: Request,
    suite: str | None = Query(default=None, description="the suite's name or path"),
    target: str | None = Query(default=None, description="a target id: prompt:ID@label or a model name"),
    status: Literal["passed", "failed", "incomplete"] | None = None,
    before: str | None = Query(default=None, description="a run id: the page of runs older than it"),
    limit: int = Query(default=50, ge=1, le=200),
) -> dict[str, object]:
    """Newest first, without the case results (GET /admin/evals/runs/{id} has them)."""
    services, _ = caller(request, *READERS)
    runs, more = await services.eval_runs.list(suite=suite, target=target, status=status, before=before, limit=limit)
    return {
        "object": "list",
        "data": runs,
        "has_more": more,
        "first_id": runs[0]["id"] if runs else None,
        "last_id": runs[-1]["id"] if runs else None,
    }


@router.get("/runs/{run_id}")
async def get_run(run_id: str, request: Request) -> dict[str, object]:
    """The run's canonical result, as it was stored."""
    services, _ = caller(request, *READERS)
    return await services.eval_runs.get(run_id)
