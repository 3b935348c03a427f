"""create_app(config): the lifespan builds Services, mounts the routers and installs the error handlers."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from gateway import __version__
from gateway.config import GatewayConfig
from gateway.errors import install_error_handlers
from gateway.middleware import RequestMiddleware
from gateway.routers import admin, health, inference, models, usage
from gateway.services import build_services
from gateway.settings import Settings

ROUTERS = (inference.router, models.router, admin.router, usage.router, health.router)
log = logging.getLogger("gateway")


def create_app(config: GatewayConfig | None = None) -> FastAPI:
    """The ASGI app. Without a config, reads GATEWAY_* settings and the config file they name."""
    config = config or Settings().resolve()
    if config.master_key is None:
        log.warning("GATEWAY_MASTER_KEY is not set: every request to the model APIs will be refused (401).")

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with build_services(config) as services:
            app.state.services = services
            yield

    app = FastAPI(title="gateway", version=__version__, lifespan=lifespan, openapi_url="/openapi.json")
    install_error_handlers(app)
    app.add_middleware(RequestMiddleware, max_request_bytes=config.max_request_bytes)
    for router in ROUTERS:
        app.include_router(router)
    return app
