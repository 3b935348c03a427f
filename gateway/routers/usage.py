"""/admin/usage: tokens and cost by key, team, model or day; /admin/budgets: spend against each budget."""

from __future__ import annotations

from datetime import UTC, date, datetime, time
from typing import Literal

from fastapi import APIRouter, Query, Request

from gateway.errors import InvalidRequest
from gateway.routers.admin import caller
from gateway.schemas.admin import BudgetOut
from gateway.usage.pricing import usd
from gateway.usage.report import usage_report

router = APIRouter(prefix="/admin", tags=["admin"])


def parse_instant(value: str | None, param: str) -> datetime | None:
    """ISO date (midnight UTC) or date-time (UTC when no offset is given)."""
    if not value:
        return None
    try:
        if len(value) == 10:
            return datetime.combine(date.fromisoformat(value), time(), UTC)
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise InvalidRequest(f"Invalid '{param}': {value!r}; expected an ISO date or date-time.", param=param) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


@router.get("/usage")
async def get_usage(
    request: Request,
    group_by: Literal["key", "team", "model", "day", "prompt"] = "key",
    start: str | None = Query(default=None, alias="from"),
    end: str | None = Query(default=None, alias="to"),
    key: str | None = None,
    team: str | None = None,
    eval_run_id: str | None = Query(default=None, description="only the calls of this eval run"),
) -> dict[str, object]:
    """`key` is a key's id or prefix, `team` a team's id or name, as on the other admin paths; an unknown one is a
    404 (key_not_found, team_not_found), not an empty report. `eval_run_id`: the calls an eval run made (their
    x-gateway-eval-run header)."""
    services, principal = caller(request, "admin", "viewer")
    if principal.role == "viewer" and principal.team_id is not None:
        team = principal.team_id  # a team's viewer reads its own team's usage only
    rows = await usage_report(
        services.db,
        group_by=group_by,
        start=parse_instant(start, "from"),
        end=parse_instant(end, "to"),
        key_id=(await services.keys.get_key(key)).id if key else None,
        team_id=(await services.keys.get_team(team)).id if team else None,
        eval_run_id=eval_run_id,
    )
    return {"object": "list", "group_by": group_by, "data": [row.model_dump() for row in rows]}


@router.get("/budgets")
async def get_budgets(request: Request) -> dict[str, object]:
    """Every budget scope of every active key and team, with spent and reserved amounts right now."""
    services, _ = caller(request, "admin", "viewer")
    now = datetime.now(UTC)
    scopes = {scope.name: scope for entry in services.key_cache.entries() for scope in entry.budgets}
    data = []
    for name, scope in sorted(scopes.items()):
        spent, reserved = await services.counters.get_budget(scope, now=now)
        data.append(
            BudgetOut(
                scope=name, budget=usd(scope.limit), period=scope.period, spent=usd(spent), reserved=usd(reserved)
            )
        )
    return {"object": "list", "data": data}
