"""/healthz (the process is up) and /readyz (the database answers, every background task runs); neither needs a key."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy import text

from gateway.services import Services

router = APIRouter(tags=["operations"])


@router.api_route("/healthz", methods=["GET", "HEAD"])  # HEAD: the same answer without its body
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.api_route("/readyz", methods=["GET", "HEAD"])
async def readyz(request: Request) -> JSONResponse:
    """503 when the database does not answer or a background task is down or crash-looping (named in `tasks`)."""
    services: Services = request.app.state.services
    try:
        async with services.db.engine.connect() as connection:
            await connection.execute(text("SELECT 1"))
    except Exception as exc:  # readiness reports the failure instead of raising it
        return JSONResponse({"status": "unavailable", "database": f"error: {type(exc).__name__}"}, status_code=503)
    unhealthy = services.tasks.unhealthy()
    if unhealthy:
        return JSONResponse({"status": "unavailable", "database": "ok", "tasks": unhealthy}, status_code=503)
    return JSONResponse({"status": "ready", "database": "ok", "tasks": "ok", "models": len(services.config.models)})
