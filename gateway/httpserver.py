"""uvicorn's httptools protocol, with each response's head sent in one write with the start of its body, and the
server's limits on what one client may hold: time to send a head and a body, head size, open connections.

uvicorn writes a response's status line and headers as soon as the app sends `http.response.start`, then the
body on `http.response.body`: two system calls and two TCP segments per response, where the head's write was
the costliest line of the hot path (bench/PROFILE.md). Here the head waits for the next write on the same
connection, or for the end of the event loop's current turn, whichever comes first, so nothing is delayed
beyond the turn that produced it and the bytes keep their order.

The limits (ServerConfig, `server:` in gateway.yaml) cost nothing for a request that arrives in one read, which is
nearly every one: no timer is armed for it. A request left incomplete after a read gets one timer: the head's
deadline, or the body's idle timeout (re-armed lazily, not per read).
"""

from __future__ import annotations

import asyncio
import http
import logging
import resource
from dataclasses import dataclass, field

from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from gateway.config import ServerConfig
from gateway.errors import GatewayError, HeadersTooLarge, RequestTimeout, ServerBusy
from gateway.middleware import new_request_id

log = logging.getLogger("gateway")
IDLE, HEAD, BODY = 0, 1, 2  # what the connection is reading: nothing yet, a request head, a request body
LINGER_S = 1.0  # an over-capacity connection stays open this long for its client to read the 503


class HeadHoldingTransport:
    """A transport that holds back a response head (bytes that look like `HTTP/... \\r\\n\\r\\n`) until the next
    write or the end of the loop turn; everything else is the wrapped transport's."""

    __slots__ = ("_transport", "_loop", "_held")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._held: bytes | None = None

    def write(self, data: bytes) -> None:
        held = self._held
        if held is not None:
            self._held = None
            self._transport.writelines((held, data))  # one system call (writev), no copy
        elif data[:5] == b"HTTP/" and data[-4:] == b"\r\n\r\n":
            self._held = data
            self._loop.call_soon(self.flush)
        else:
            self._transport.write(data)

    def writelines(self, lines: list[bytes]) -> None:
        held = self._held
        if held is not None:
            self._held = None
            lines = [held, *lines]
        self._transport.writelines(lines)

    def flush(self) -> None:
        held = self._held
        if held is not None:
            self._held = None
            self._transport.write(held)

    def write_eof(self) -> None:
        self.flush()
        self._transport.write_eof()

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def abort(self) -> None:
        self._held = None  # dropped with the rest of the unsent bytes, as abort() does
        self._transport.abort()

    def __getattr__(self, name: str) -> object:
        return getattr(self._transport, name)


class GatewayHttpProtocol(HttpToolsProtocol):
    """Selected by `gateway serve` as `partial(GatewayHttpProtocol, limits=ServerLimits(config.server))`."""

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, object],
        _loop: asyncio.AbstractEventLoop | None = None,
        *,
        limits: ServerLimits | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self.limits = limits or ServerLimits()
        settings = self.limits.config
        self.header_timeout = settings.header_timeout_s
        self.body_timeout = settings.body_timeout_s
        self.max_header_bytes = settings.max_header_bytes
        self.reading = IDLE
        self.head_bytes = 0  # bytes received since the last request ended (its successor's head so far)
        self.head_deadline: asyncio.TimerHandle | None = None
        self.body_idle: asyncio.TimerHandle | None = None
        self.body_read_at = 0.0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        if len(self.connections) >= self.limits.config.max_connections:
            self.limits.note_refusal(
                peer_of(transport.get_extra_info("peername")), len(self.connections), self.loop.time()
            )
            busy = ServerBusy("The gateway is at its connection limit; retry shortly.")
            transport.set_protocol(Refusal(transport, self.loop, error_answer(busy)))
            return
        super().connection_made(HeadHoldingTransport(transport, self.loop))  # type: ignore[arg-type]
        # The first request's head is due header_timeout_s after the connection opens (later ones: after their
        # first byte; uvicorn's keep-alive timeout covers the wait before it).
        self.head_deadline = self.loop.call_later(self.header_timeout, self.on_head_timeout)

    def connection_lost(self, exc: Exception | None) -> None:
        self.cancel_timers()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self.reading != BODY:
            self.head_bytes += len(data)
            if self.head_bytes > self.max_header_bytes:
                self.receive_long_head(data)
                return
        super().data_received(data)
        self.watch()

    # Parser callbacks: they track what the connection is reading.
    def on_message_begin(self) -> None:
        super().on_message_begin()
        self.reading = HEAD

    def on_headers_complete(self) -> None:
        super().on_headers_complete()
        self.reading = BODY

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self.reading = IDLE
        self.head_bytes = 0

    def watch(self) -> None:
        """After a read: no timer for a complete request; the head's deadline or the body's idle timeout else."""
        reading = self.reading
        if reading == IDLE:
            if self.head_deadline is not None:
                self.head_deadline.cancel()
                self.head_deadline = None
        elif reading == HEAD:
            if self.head_deadline is None:
                self.head_deadline = self.loop.call_later(self.header_timeout, self.on_head_timeout)
        else:
            if self.head_deadline is not None:
                self.head_deadline.cancel()
                self.head_deadline = None
            self.body_read_at = self.loop.time()
            if self.body_idle is None:
                self.body_idle = self.loop.call_later(self.body_timeout, self.on_body_idle)

    def receive_long_head(self, data: bytes) -> None:
        """Data that takes the head past max_header_bytes: the part within the limit is parsed; if the head ends
        there, the rest is parsed as usual, else the request is refused before more of its head is buffered."""
        allowed = self.max_header_bytes - (self.head_bytes - len(data))
        self.head_bytes = self.max_header_bytes  # on_message_complete resets it if the request ends in the part
        if allowed > 0:
            super().data_received(data[:allowed])
            if self.transport.is_closing():
                return
        if self.reading == BODY or self.head_bytes == 0:
            self.data_received(data[allowed:])
            return
        log.warning(
            "refused request from %s: its head exceeds server.max_header_bytes (%d bytes); answered 431",
            peer_of(self.client), self.max_header_bytes,
        )  # fmt: skip
        message = f"The request's headers exceed this gateway's limit of {self.max_header_bytes} bytes."
        self.answer_and_close(HeadersTooLarge(message))

    def on_head_timeout(self) -> None:
        self.head_deadline = None
        if self.reading == BODY or self.transport.is_closing():
            return
        started = self.reading == HEAD or self.head_bytes > 0
        log.warning(
            "closed connection from %s: %s within server.header_timeout_s (%gs)%s",
            peer_of(self.client), "request head incomplete" if started else "no request",
            self.header_timeout, "; answered 408" if started else "",
        )  # fmt: skip
        cycle = self.cycle
        if started and (cycle is None or cycle.response_complete):
            message = f"The request's headers did not arrive within {self.header_timeout:g} s."
            self.answer_and_close(RequestTimeout(message))
        else:
            self.transport.close()

    def on_body_idle(self) -> None:
        self.body_idle = None
        if self.reading != BODY or self.transport.is_closing():
            return
        now = self.loop.time()
        if self.flow.read_paused:  # the app has not taken what came: the wait is ours, not the client's
            self.body_read_at = now
        idle = now - self.body_read_at
        if idle < self.body_timeout:
            self.body_idle = self.loop.call_later(self.body_timeout - idle, self.on_body_idle)
            return
        cycle = self.cycle
        answered = cycle.response_started
        log.warning(
            "closed connection from %s: no request body bytes for server.body_timeout_s (%gs)%s",
            peer_of(self.client), self.body_timeout, "" if answered else "; answered 408",
        )  # fmt: skip
        if answered:
            self.transport.close()
            return
        cycle.disconnected = True  # the app's receive() answers http.disconnect; whatever it sends is dropped
        cycle.message_event.set()
        self.answer_and_close(RequestTimeout(f"The request body stalled for {self.body_timeout:g} s."))

    def answer_and_close(self, error: GatewayError) -> None:
        self.cancel_timers()
        self.transport.write(error_answer(error))
        self.transport.close()

    def cancel_timers(self) -> None:
        for timer in (self.head_deadline, self.body_idle):
            if timer is not None:
                timer.cancel()
        self.head_deadline = self.body_idle = None


@dataclass
class ServerLimits:
    """The `server:` settings one worker process applies, and its count of refused connections (for the log)."""

    config: ServerConfig = field(default_factory=ServerConfig)
    refused: int = 0
    logged_at: float = float("-inf")

    def note_refusal(self, peer: str, open_connections: int, now: float) -> None:
        """Logs a refused connection, at most once a second (a flood would otherwise flood the log too)."""
        self.refused += 1
        if now - self.logged_at >= 1.0:
            log.warning(
                "refused connection from %s: %d connections open, server.max_connections is %d "
                "(%d refused since the last such line)",
                peer, open_connections, self.config.max_connections, self.refused,
            )  # fmt: skip
            self.logged_at, self.refused = now, 0


def error_answer(error: GatewayError) -> bytes:
    """A whole HTTP response (OpenAI-shaped JSON body, `connection: close`) for answers made below the app."""
    body = error.body_bytes()
    phrase = http.HTTPStatus(error.status_code).phrase
    head = (
        f"HTTP/1.1 {error.status_code} {phrase}\r\ncontent-type: application/json\r\ncontent-length: {len(body)}\r\n"
        f"connection: close\r\nx-request-id: {new_request_id()}\r\n\r\n"
    )
    return head.encode("latin-1") + body


class Refusal(asyncio.Protocol):
    """An over-capacity connection: answered 503 at once, its input read and dropped (closing on unread input
    would reset the connection and could lose the answer), closed when the client closes or after LINGER_S."""

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop, answer: bytes) -> None:
        transport.write(answer)
        if transport.can_write_eof():
            transport.write_eof()
        self.timer = loop.call_later(LINGER_S, transport.close)

    def data_received(self, data: bytes) -> None:
        pass

    def connection_lost(self, exc: Exception | None) -> None:
        self.timer.cancel()


def peer_of(client: tuple[str, int] | None) -> str:
    return f"{client[0]}:{client[1]}" if client else "unknown peer"


def raise_descriptor_limit(max_connections: int) -> str | None:
    """Raises this process's open-file limit (soft, up to the hard one) to fit max_connections and some headroom
    (database, upstream connections, spool files). Returns a warning when the hard limit is too low."""
    needed = max_connections + 256
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        soft = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    if soft != resource.RLIM_INFINITY and soft < needed:
        return (
            f"server.max_connections ({max_connections}) and 256 more descriptors exceed this process's "
            f"open-file limit ({soft}); raise it (ulimit -n) or lower server.max_connections"
        )
    return None
