"""POST /v1/chat/completions, /v1/completions and /v1/embeddings (JSON and SSE) through the one pipeline."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from typing import TypeVar

from fastapi import APIRouter, Request
from starlette.responses import Response, StreamingResponse
from starlette.types import Receive, Scope, Send

from gateway.errors import ClientDisconnected, GatewayError, error_response, internal_error
from gateway.pipeline.context import CallContext, Operation
from gateway.providers.base import Reply

router = APIRouter(tags=["inference"])
T = TypeVar("T")
STREAM_HEADERS = {"cache-control": "no-cache", "x-accel-buffering": "no"}
FAST_PATHS: dict[str, Operation] = {
    "/v1/chat/completions": "chat",
    "/v1/completions": "completions",
    "/v1/embeddings": "embeddings",
}
log = logging.getLogger("gateway")
OVERHEAD_HEADER = "x-gateway-overhead-ms"
WATCH_AFTER_S = 0.05  # a call still running after this watches for its client leaving


async def serve(scope: Scope, receive: Receive, send: Send) -> None:
    """The inference endpoints as a bare ASGI app (GatewayApp's fast lane): same relay, same error bodies."""
    request = Request(scope, receive)
    try:
        response = await relay(request, FAST_PATHS[scope["path"]])
    except GatewayError as exc:
        response = error_response(exc)
    except Exception:  # rendered here as errors.py renders it for FastAPI routes
        request_id = scope["state"]["request_id"]
        log.exception("unhandled error in request %s", request_id)
        response = error_response(internal_error(request_id))
    await response(scope, receive, send)


@router.post("/v1/chat/completions")
async def chat_completions(request: Request) -> Response:
    return await relay(request, "chat")


@router.post("/v1/completions")
async def completions(request: Request) -> Response:
    return await relay(request, "completions")


@router.post("/v1/embeddings")
async def embeddings(request: Request) -> Response:
    return await relay(request, "embeddings")


async def relay(request: Request, operation: Operation) -> Response:
    """Body in, pipeline, body out: the JSON reply as the upstream's bytes, or the SSE stream."""
    ctx = CallContext(
        request_id=request.scope["state"]["request_id"],
        operation=operation,
        raw=await request.body(),
        authorization=request.headers.get("authorization"),
    )
    try:
        result = await until_disconnect(request, request.app.state.services.pipeline.run(ctx))
    except GatewayError as exc:
        exc.headers[OVERHEAD_HEADER] = f"{ctx.overhead_ms():.3f}"
        raise
    headers = {OVERHEAD_HEADER: f"{ctx.overhead_ms():.3f}"}
    if ctx.response_headers:
        headers.update(ctx.response_headers)
    if isinstance(result, Reply):
        return Response(result.body, media_type="application/json", headers=headers)
    return StreamingResponse(result, media_type="text/event-stream", headers={**STREAM_HEADERS, **headers})


async def until_disconnect(request: Request, work: Awaitable[T]) -> T:
    """Awaits work, cancelling it (and so its upstream request) if the client disconnects meanwhile.

    The watch starts only once the work has taken WATCH_AFTER_S: most calls finish first and never create its
    task (a task per request was ~5 % of the CPU at 50 clients); a client leaving a model call that runs for
    seconds still cancels it within WATCH_AFTER_S.
    """
    loop = asyncio.get_running_loop()
    current = asyncio.current_task(loop)  # with the loop: one get_running_loop (and getpid) less
    assert current is not None
    gone = False
    watcher: asyncio.Task[None] | None = None

    async def watch() -> None:
        nonlocal gone
        while (await request.receive())["type"] != "http.disconnect":
            pass
        gone = True
        current.cancel()

    def start_watching() -> None:
        nonlocal watcher
        watcher = loop.create_task(watch())

    timer = loop.call_later(WATCH_AFTER_S, start_watching)
    try:
        return await work
    except asyncio.CancelledError:
        if gone and current.uncancel() == 0:
            raise ClientDisconnected("The client closed the connection before the answer was ready.") from None
        raise
    finally:
        timer.cancel()
        if watcher is not None:
            watcher.cancel()
