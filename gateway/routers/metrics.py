"""GET /metrics (the configured path): Prometheus text exposition, open or for admin and viewer keys."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from gateway.config import MetricsConfig
from gateway.routers.admin import caller
from gateway.services import Services


def metrics_router(config: MetricsConfig) -> APIRouter:
    """A router serving the metrics at config.path; the path comes from the config, so it is built per app."""
    router = APIRouter(tags=["operations"])

    @router.get(config.path, include_in_schema=False)
    async def metrics(request: Request) -> Response:
        services: Services = request.app.state.services
        if config.require_key:
            caller(request, "admin", "viewer")  # raises 401 or 403
        telemetry_metrics = services.telemetry.metrics
        assert telemetry_metrics is not None, "mounted only when metrics are enabled"
        body, content_type = telemetry_metrics.render()
        return Response(body, headers={"content-type": content_type})

    return router
