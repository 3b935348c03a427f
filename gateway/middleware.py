"""Pure-ASGI middleware: stamps x-request-id (and x-gateway-overhead-ms) on every response; enforces the size limit;
hands every finished request to the operator log.

The id is always the gateway's own: it keys usage records, budget reservations and rate windows, so a
client-chosen id (which a client could repeat) must never stand in for it.
"""

from __future__ import annotations

import os
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.errors import PayloadTooLarge
from gateway.telemetry.oplog import OperatorLog

OVERHEAD = b"x-gateway-overhead-ms"


def new_request_id() -> str:
    """`req_`, the time in milliseconds (12 hex digits), then 64 random bits: unique, and in time order, so the
    usage table's unique index on request_id grows at its end rather than at a random page per insert."""
    return f"req_{time.time_ns() // 1_000_000:012x}{os.urandom(8).hex()}"


class RequestMiddleware:
    """Cheap by construction (no BaseHTTPMiddleware): one header lookup, one wrapped send per request."""

    def __init__(self, app: ASGIApp, *, max_request_bytes: int, oplog: OperatorLog | None = None) -> None:
        self.app = app
        self.max_request_bytes = max_request_bytes
        self.oplog = oplog

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = None
        for name, value in scope["headers"]:
            if name == b"content-length":
                length = int(value) if value.isdigit() else None
                break
        started = time.perf_counter()
        request_id = new_request_id()
        scope.setdefault("state", {})["request_id"] = request_id
        stamp = (b"x-request-id", request_id.encode())
        status: int | None = None

        async def send_stamped(message: Message) -> None:
            if message["type"] == "http.response.start":
                nonlocal status
                status = message["status"]
                headers = [*message.get("headers", ()), stamp]
                # Model calls set their own overhead (upstream time excluded); every other response is all
                # gateway time.
                if not any(name == OVERHEAD for name, _ in headers):
                    headers.append((OVERHEAD, b"%.3f" % ((time.perf_counter() - started) * 1000)))
                message["headers"] = headers
            await send(message)

        limit = self.max_request_bytes
        if length is not None and length > limit:
            await self._refuse(length, send_stamped)
            if self.oplog is not None:
                self.oplog.request(scope, status, time.perf_counter() - started, PayloadTooLarge.code)
            return
        received = 0

        async def receive_limited() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise PayloadTooLarge(self._message(received))
            return message

        if self.oplog is None:
            await self.app(scope, receive_limited if length is None else receive, send_stamped)
            return
        error = None
        try:
            await self.app(scope, receive_limited if length is None else receive, send_stamped)
        except Exception:
            error = "internal_error"  # rendered outside this middleware (Starlette's ServerErrorMiddleware)
            raise
        finally:
            self.oplog.request(scope, status, time.perf_counter() - started, error)

    def _message(self, size: int) -> str:
        return f"Request body of {size} bytes exceeds this gateway's limit of {self.max_request_bytes} bytes."

    async def _refuse(self, size: int, send: Send) -> None:
        error = PayloadTooLarge(self._message(size))
        body = error.body_bytes()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": error.status_code, "headers": headers})
        await send({"type": "http.response.body", "body": body})
