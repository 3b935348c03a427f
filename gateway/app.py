"""create_app(config): the lifespan builds Services, mounts the routers and installs the error handlers."""

from __future__ import annotations

import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from starlette.types import Receive, Scope, Send

from gateway import __version__
from gateway.config import GatewayConfig
from gateway.errors import install_error_handlers
from gateway.middleware import RequestMiddleware
from gateway.policy.loader import MakeCheck
from gateway.routers import (
    admin,
    approvals,
    audit,
    calls,
    evals,
    health,
    inference,
    models,
    policies,
    prompts,
    usage,
)
from gateway.routers.metrics import metrics_router
from gateway.services import build_services
from gateway.settings import Settings
from gateway.tasks import TaskSupervisor
from gateway.telemetry.oplog import OperatorLog

# The collector after the freeze: at 700/10/10 the objects of requests in flight were promoted to the oldest
# generation every few ms and full collections ran ~4 times a second (73 in 20 s at 100 clients, up to 53 ms each,
# 1.4 s of the 20 s collecting). At 5,000/10/100: 3 full collections, 0.7 s. Benchmark, alternating runs at 50
# clients: 3,742 / 3,918 -> 4,242 / 4,076 req/s, CPU 0.285 / 0.271 -> 0.251 / 0.261 ms per request; RSS unchanged.
GC_THRESHOLDS = (5_000, 10, 100)
ROUTERS = (
    inference.router,
    models.router,
    admin.router,
    usage.router,
    audit.router,
    policies.router,
    approvals.router,
    prompts.router,
    evals.router,
    calls.router,
    health.router,
)
log = logging.getLogger("gateway")


class GatewayApp(FastAPI):
    """FastAPI, with a fast lane: POSTs to the inference paths go straight to their ASGI handler.

    FastAPI's middleware stack, routing and dependency solving cost about 110 µs of CPU per request here
    (172 µs against 60 µs in-process, measured with the fake provider); the model endpoints skip them and
    keep only the request-id and size-limit middleware. Every other route goes through FastAPI.
    """

    fast_lane: RequestMiddleware

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST" and scope["path"] in inference.FAST_PATHS:
            scope["app"] = self
            await self.fast_lane(scope, receive, send)
            return
        await super().__call__(scope, receive, send)


def create_app(
    config: GatewayConfig | None = None,
    *,
    freeze_gc: bool = True,
    tasks: TaskSupervisor | None = None,
    make_check: MakeCheck | None = None,
) -> FastAPI:
    """The ASGI app. Without a config, reads GATEWAY_* settings and the config file they name.

    freeze_gc=False skips the startup collection below: for processes that build many apps (the test suite),
    where one full collection over their large heap costs ~0.1 s per app and buys nothing. `tasks` and
    `make_check` are build_services' seams (background-task restarts, policy checks)."""
    config = config or Settings().resolve()
    if config.master_key is None:
        log.warning("GATEWAY_MASTER_KEY is not set: every request to the model APIs will be refused (401).")

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with build_services(config, tasks=tasks, make_check=make_check) as services:
            app.state.services = services
            # Everything built at startup (price map, tokenizers, policies, caches) lives as long as the
            # process: move it out of the collector's reach. Under load, full collections scanning it took
            # 23-33% of CPU and caused 68-350 ms pauses (bench/PROFILE.md).
            if freeze_gc:
                gc.collect()
                gc.freeze()
                gc.set_threshold(*GC_THRESHOLDS)
            yield
            if freeze_gc:
                gc.unfreeze()

    app = GatewayApp(title="gateway", version=__version__, lifespan=lifespan, openapi_url="/openapi.json")
    install_error_handlers(app)
    metrics = config.telemetry.metrics
    oplog = OperatorLog(config.log, quiet_paths=[metrics.path] if metrics.enabled else [])
    app.add_middleware(RequestMiddleware, max_request_bytes=config.max_request_bytes, oplog=oplog)
    app.fast_lane = RequestMiddleware(inference.serve, max_request_bytes=config.max_request_bytes, oplog=oplog)
    for router in ROUTERS:
        app.include_router(router)
    if config.telemetry.metrics.enabled:
        app.include_router(metrics_router(config.telemetry.metrics))
    return app
