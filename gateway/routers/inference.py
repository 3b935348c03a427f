"""POST /v1/chat/completions, /v1/completions and /v1/embeddings (JSON and SSE) through the one pipeline."""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterator, Awaitable
from typing import TypeVar

from fastapi import APIRouter, Request
from starlette.responses import Response, StreamingResponse
from starlette.types import Receive, Scope, Send

from gateway.calls.context import CallContext, Operation
from gateway.errors import (
    ClientDisconnected,
    GatewayError,
    InvalidRequest,
    drop_frames,
    error_response,
    internal_error,
)
from gateway.middleware import OVERHEAD
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
# The eval run a call belongs to (`gateway eval run` sends it): stored on the call's usage record.
EVAL_RUN_HEADER = b"x-gateway-eval-run"
EVAL_RUN_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")


async def serve(scope: Scope, receive: Receive, send: Send) -> None:
    """The inference endpoints as a bare ASGI app (GatewayApp's fast lane): same pipeline, same error bodies.
    A JSON answer goes out as two raw ASGI messages: Starlette's Request and Response cost ~9 µs per call."""
    body = None
    try:
        ctx, result = await answer(scope, receive, FAST_PATHS[scope["path"]])
        if isinstance(result, Reply):
            body = result.body
            headers = [
                (b"content-length", b"%d" % len(body)),
                (b"content-type", b"application/json"),
                (OVERHEAD, b"%.3f" % ctx.overhead_ms()),
            ]
            if ctx.response_headers:  # names are lower case already (CallContext.response_headers)
                headers += [
                    (name.encode("latin-1"), value.encode("latin-1")) for name, value in ctx.response_headers.items()
                ]
        else:
            response = event_stream(result, answer_headers(ctx))
    except GatewayError as exc:
        body, response = None, error_response(exc)
        drop_frames(exc)
    except Exception:  # rendered here as errors.py renders it for FastAPI routes
        request_id = scope["state"]["request_id"]
        log.exception("unhandled error in request %s", request_id)
        body, response = None, error_response(internal_error(request_id))
    if body is not None:
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})
        return
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
    """The same call as a FastAPI route returns it (these routes document the API; POSTs take the fast lane)."""
    ctx, result = await answer(request.scope, request.receive, operation)
    headers = answer_headers(ctx)
    if isinstance(result, Reply):
        return Response(result.body, media_type="application/json", headers=headers)
    return event_stream(result, headers)


async def answer(
    scope: Scope, receive: Receive, operation: Operation
) -> tuple[CallContext, Reply | AsyncIterator[bytes]]:
    """Body in, pipeline: the upstream's JSON reply, or the SSE stream. GatewayErrors carry the overhead header."""
    authorization = eval_run = None
    for name, value in scope["headers"]:
        if name == b"authorization":
            authorization = value.decode("latin-1")
        elif name == EVAL_RUN_HEADER:
            eval_run = value.decode("latin-1")
    if eval_run is not None and EVAL_RUN_ID.fullmatch(eval_run) is None:
        raise InvalidRequest(
            f"Header x-gateway-eval-run must be an eval run id (1-64 of A-Z a-z 0-9 _ -); got {eval_run[:80]!r}.",
            param="x-gateway-eval-run",
        )
    ctx = CallContext(
        request_id=scope["state"]["request_id"],
        operation=operation,
        raw=await read_body(receive),
        authorization=authorization,
        eval_run_id=eval_run,
    )
    scope["state"]["call"] = ctx  # for the request's line in the operator log (middleware.py)
    try:
        result = await until_disconnect(receive, scope["app"].state.services.pipeline.run(ctx))
    except GatewayError as exc:
        exc.headers[OVERHEAD_HEADER] = f"{ctx.overhead_ms():.3f}"
        raise
    return ctx, result


def answer_headers(ctx: CallContext) -> dict[str, str]:
    """The gateway's overhead and whatever the stages set (rate limits, a shadow decision)."""
    headers = {OVERHEAD_HEADER: f"{ctx.overhead_ms():.3f}"}
    if ctx.response_headers:
        headers.update(ctx.response_headers)
    return headers


def event_stream(events: AsyncIterator[bytes], headers: dict[str, str]) -> StreamingResponse:
    return StreamingResponse(events, media_type="text/event-stream", headers={**STREAM_HEADERS, **headers})


async def read_body(receive: Receive) -> bytes:
    """The whole request body (the middleware has already refused one over the size limit)."""
    chunks = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnected("The client closed the connection before sending the whole request.")
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


async def until_disconnect(receive: Receive, work: Awaitable[T]) -> T:
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
        while (await receive())["type"] != "http.disconnect":
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
