"""Pooled HTTP/1.1 keep-alive connections to upstreams: one POST at a time per connection, parsed by httptools.

Why not aiohttp's client here: the direct path makes one kind of request (a POST of JSON bytes to a few fixed
origins), and aiohttp's general machinery (per-request header multidicts, timeout contexts, tracing, cookie and
redirect handling) cost 0.139 ms of CPU per call against 0.040 ms for this module on the same machine, sequential
calls to bench/upstream.py under uvloop: a quarter of the gateway's whole CPU per request. The parser is
httptools (llhttp, Node's parser), already installed with uvicorn; aiohttp stays for webhooks and HTTP checks.
"""

from __future__ import annotations

import asyncio
import ssl
import zlib
from collections import deque
from collections.abc import AsyncIterator, Callable

import httptools

from gateway.providers.endpoints import Endpoint, Origin

KEEPALIVE_S = 30.0  # idle connections older than this are closed, not reused
PAUSE_ABOVE = 256 * 1024  # a stream read slower than the upstream writes stops reading the socket above this
DRAIN_S = 1.0  # a stream left after its last event may finish its body within this and keep its connection
# A reused connection closed this soon after the request was written, before any byte of the answer, was closed
# by the upstream while idle (its keep-alive timeout racing our reuse): the request is sent once more on a new
# connection. Later, the upstream may have read and started on the request: a POST is never replayed then.
RESEND_WITHIN_S = 0.25
MAX_HEADER_BYTES = 64 * 1024  # an answer's status line and headers; more is not an HTTP API answering


class UpstreamConnectionError(Exception):
    """The upstream could not be reached (`reached` False) or broke the HTTP exchange; the message says how."""

    def __init__(self, message: str, *, reached: bool = True) -> None:
        super().__init__(message)
        self.reached = reached


class UpstreamProtocolError(UpstreamConnectionError):
    """The upstream answered something that is not usable HTTP/1.1: asking again would get the same."""


class Connection(asyncio.Protocol):
    """One socket to one origin. Parser callbacks fill status, headers and body chunks; `_wake` is resolved
    when the caller can go on (headers in for a stream, the whole message otherwise, or a failure)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, origin: Origin) -> None:
        self.loop = loop
        self.origin = origin
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.closed = False
        self.reused = False
        self.idle_since = 0.0
        self.last_data = 0.0
        self._paused = False
        self._timer: asyncio.TimerHandle | None = None
        self._idle_s: float | None = None
        self._on_done: Callable[[Connection], None] | None = None
        self.chunks: deque[bytes] = deque()  # emptied by take(); one per connection, not per request
        self._begin(stream=False)

    def _begin(self, *, stream: bool) -> None:
        self.stream = stream
        self.status = 0
        self.headers: dict[str, str] = {}  # new each time: the caller keeps the last answer's
        self.chunks.clear()
        self.buffered = 0
        self.in_flight = False
        self.received = False
        self.headers_done = False
        self.complete = False
        self.keep_alive = False
        self.until_close = False
        self.error: BaseException | None = None
        self.header_bytes = 0
        self.sent_at = 0.0
        self.lost_at = 0.0
        self.draining = False
        self._decoder: zlib._Decompress | None = None
        self._wake: asyncio.Future[None] | None = None

    def send(self, data: bytes, *, stream: bool) -> asyncio.Future[None]:
        assert self.transport is not None
        self._begin(stream=stream)
        self.in_flight = True
        self.last_data = self.sent_at = self.loop.time()
        self._wake = wake = self.loop.create_future()
        self.transport.write(data)
        return wake

    def wait(self) -> asyncio.Future[None]:
        """A future resolved on the next chunk, the end of the message or a failure (streams only)."""
        self._wake = wake = self.loop.create_future()
        if self.chunks or self.complete or self.error is not None:
            wake.set_result(None)
        return wake

    def take(self) -> bytes:
        """The body bytes received so far (all of them once `complete`), reading the socket again if paused."""
        data = b"".join(self.chunks) if len(self.chunks) != 1 else self.chunks[0]
        self.chunks.clear()
        self.buffered = 0
        if self._paused and self.transport is not None:
            self._paused = False
            self.transport.resume_reading()
        return data

    def arm(self, at: float, *, idle_s: float | None = None) -> None:
        """Fail with TimeoutError at `at`, or, with idle_s, once no byte has come for idle_s (a long stream is
        fine as long as it keeps sending; a reader that paused the socket itself does not count)."""
        self._idle_s = idle_s
        self._timer = self.loop.call_at(at, self._on_timer)

    def disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _on_timer(self) -> None:
        self._timer = None
        if not self.in_flight or self.complete or self.error is not None:
            return
        if self._idle_s is not None:
            now = self.loop.time()
            due = now + self._idle_s if self._paused else self.last_data + self._idle_s
            if due > now:
                self._timer = self.loop.call_at(due, self._on_timer)
                return
        self.abort(TimeoutError())

    def abort(self, error: BaseException | None = None) -> None:
        """Fail the request in flight (if any) and drop the socket."""
        if error is not None:
            self._fail(error)
        self.closed = True
        if self.transport is not None:
            self.transport.abort()

    def drain(self, done: Callable[[Connection], None]) -> None:
        """Reads the rest of the answer in the background, dropping it, for at most DRAIN_S; `done` then runs with
        the connection complete (reusable) or failed."""
        self.draining = True
        self._on_done = done
        self.take()
        self.disarm()
        self._idle_s = None
        self._timer = self.loop.call_later(DRAIN_S, self._on_timer)

    def _fail(self, error: BaseException) -> None:
        if self.error is None and self.in_flight and not self.complete:
            self.error = error
            self._settle()

    def _settle(self) -> None:
        """The message is complete or failed: wake the reader, or hand a drained connection back."""
        self._resolve()
        done, self._on_done = self._on_done, None
        if done is not None:
            done(self)

    def _resolve(self) -> None:
        wake = self._wake
        if wake is not None and not wake.done():
            wake.set_result(None)

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        if not self.in_flight or self.complete:
            self.abort()  # bytes nobody asked for: the connection's state is unknown
            return
        self.received = True
        self.last_data = self.loop.time()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self.abort(UpstreamProtocolError("the upstream switched protocols; only HTTP/1.1 is supported"))
        except httptools.HttpParserError as exc:
            self.abort(UpstreamProtocolError(f"the upstream sent an invalid HTTP response ({exc})"))
            if self.complete:
                self.abort()  # the answer in hand stands; the bytes after it make the connection unusable

    def eof_received(self) -> bool:
        return False  # close our side too; connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.lost_at = self.loop.time()
        if self.in_flight and not self.complete and self.headers_done and self.until_close and self.error is None:
            if exc is None:  # a body delimited by the end of the connection (a reset truncates it: failure below)
                self._end_message(keep_alive=False)
                return
        detail = f": {exc}" if exc else ""
        self._fail(UpstreamConnectionError(f"the upstream closed the connection before a complete response{detail}"))

    # httptools callbacks
    def on_message_begin(self) -> None:
        if self.complete:  # a second response in the same read: stop parsing, keep the first, drop the socket
            raise UpstreamProtocolError("the upstream sent a response nobody asked for")

    def on_header(self, name: bytes, value: bytes) -> None:
        self.header_bytes += len(name) + len(value)
        if self.header_bytes > MAX_HEADER_BYTES:
            raise UpstreamProtocolError(f"the upstream's response headers exceed {MAX_HEADER_BYTES} bytes")
        key = name.decode("latin-1").lower()
        text = value.decode("latin-1")
        self.headers[key] = f"{self.headers[key]}, {text}" if key in self.headers else text

    def on_headers_complete(self) -> None:
        self.status = status = self.parser.get_status_code()
        if status < 200:
            return  # 1xx: an interim response, the real one follows
        headers = self.headers
        chunked = "chunked" in headers.get("transfer-encoding", "").lower()
        self.until_close = "content-length" not in headers and not chunked and status not in (204, 304)
        encoding = headers.get("content-encoding", "identity").strip().lower()
        if encoding in ("gzip", "x-gzip", "deflate"):
            self._decoder = zlib.decompressobj(wbits=47)  # 32 + 15: a gzip or zlib header, detected
        elif encoding != "identity":
            self.abort(UpstreamProtocolError(f"the upstream answered with content-encoding {encoding!r}"))
            return
        self.headers_done = True
        if self.stream:
            self._resolve()

    def on_body(self, body: bytes) -> None:
        if self.draining:
            return
        if self._decoder is not None:
            try:
                body = self._decoder.decompress(body)
            except zlib.error as exc:
                self.abort(UpstreamProtocolError(f"the upstream's compressed body is corrupt ({exc})"))
                return
        self.chunks.append(body)
        self.buffered += len(body)
        if self.stream:
            self._resolve()
            if self.buffered > PAUSE_ABOVE and not self._paused and self.transport is not None:
                self._paused = True
                self.transport.pause_reading()

    def on_message_complete(self) -> None:
        if not self.headers_done:
            self.headers.clear()  # the 1xx response ended; read the next one
            return
        self._end_message(keep_alive=self.parser.should_keep_alive())

    def _end_message(self, *, keep_alive: bool) -> None:
        decoder = self._decoder
        if decoder is not None:
            if not self.draining:
                self.chunks.append(decoder.flush())
            if not decoder.eof:
                self.abort(UpstreamProtocolError("the upstream's compressed body ends before its end"))
                return
        self.complete = True
        self.keep_alive = keep_alive
        self._settle()


class ConnectionPool:
    """Idle connections per origin, the most recently used reused first; every request has a timeout.

    Raises TimeoutError when the timeout passes (connecting included) and UpstreamConnectionError when the
    upstream cannot be reached or breaks the exchange. A request whose reused connection turns out to have been
    closed by the upstream before any byte of the answer (an idle timeout on its side racing our reuse) is sent
    once more on a new connection."""

    def __init__(self, *, keepalive_s: float = KEEPALIVE_S, ssl_context: ssl.SSLContext | None = None) -> None:
        self.keepalive_s = keepalive_s
        self._ssl = ssl_context
        self._idle: dict[Origin, list[Connection]] = {}
        self._open: set[Connection] = set()
        self._sweep: asyncio.TimerHandle | None = None
        self._closed = False

    async def fetch(self, endpoint: Endpoint, body: bytes, *, timeout_s: float) -> tuple[int, dict[str, str], bytes]:
        """(status, headers with lower-case names, body) of one POST, the whole answer read."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        conn = await self._exchange(endpoint, body, loop, deadline, stream=False)
        status, headers, data = conn.status, conn.headers, conn.take()
        self._release(conn)
        return status, headers, data

    async def open_stream(self, endpoint: Endpoint, body: bytes, *, timeout_s: float) -> StreamResponse:
        """Sends one POST and returns once the answer's head is in; reading its body waits at most timeout_s for
        each next byte. Close the StreamResponse (`async with`) to give the connection back."""
        loop = asyncio.get_running_loop()
        conn = await self._exchange(endpoint, body, loop, loop.time() + timeout_s, stream=True, idle_s=timeout_s)
        return StreamResponse(self, conn)

    async def _exchange(
        self,
        endpoint: Endpoint,
        body: bytes,
        loop: asyncio.AbstractEventLoop,
        deadline: float,
        *,
        stream: bool,
        idle_s: float | None = None,
    ) -> Connection:
        data = endpoint.request(body)
        resent = False
        while True:
            conn = await self._acquire(endpoint.origin, loop, deadline, reuse=not resent)
            wake = conn.send(data, stream=stream)
            conn.arm(deadline, idle_s=idle_s)
            try:
                await wake
            except BaseException:
                self._discard(conn)  # cancelled: the answer would arrive for nobody
                raise
            if conn.error is None:
                if not stream:
                    conn.disarm()
                return conn
            self._discard(conn)
            if resent or not self._closed_while_idle(conn):
                raise conn.error
            resent = True

    @staticmethod
    def _closed_while_idle(conn: Connection) -> bool:
        """The upstream closed a reused connection before reading the request (see RESEND_WITHIN_S)."""
        return (
            conn.reused
            and not conn.received
            and type(conn.error) is UpstreamConnectionError
            and conn.lost_at - conn.sent_at < RESEND_WITHIN_S
        )

    async def _acquire(
        self, origin: Origin, loop: asyncio.AbstractEventLoop, deadline: float, *, reuse: bool = True
    ) -> Connection:
        idle = self._idle.get(origin) if reuse else None
        while idle:
            conn = idle.pop()
            if not conn.closed and loop.time() - conn.idle_since < self.keepalive_s:
                conn.reused = True
                return conn
            self._discard(conn)
        if self._closed:
            raise UpstreamConnectionError("the gateway is shutting down", reached=False)
        context = None
        if origin.scheme == "https":
            context = self._ssl = self._ssl or ssl.create_default_context()
        try:
            async with asyncio.timeout_at(deadline):
                _, conn = await loop.create_connection(
                    lambda: Connection(loop, origin), origin.host, origin.port, ssl=context
                )
        except TimeoutError:
            raise  # an OSError too, but the caller's timeout: not a connection failure
        except OSError as exc:  # refused, unreachable, DNS (gaierror), TLS (SSLError)
            reason = exc.strerror or str(exc) or type(exc).__name__
            message = f"could not connect to {origin.host}:{origin.port}: {reason}"
            raise UpstreamConnectionError(message, reached=False) from exc
        self._open.add(conn)
        return conn

    def _finish(self, conn: Connection) -> None:
        """A connection whose answer was read to its end goes back to the pool; any other is closed."""
        if conn.complete and conn.error is None:
            conn.disarm()
            self._release(conn)
        else:
            self._discard(conn)

    def _release(self, conn: Connection) -> None:
        if not conn.keep_alive or conn.closed or self._closed:
            self._discard(conn)
            return
        conn.take()  # nothing left over, and reading again if a slow stream reader had paused it
        conn.in_flight = False
        conn.idle_since = conn.loop.time()
        self._idle.setdefault(conn.origin, []).append(conn)
        if self._sweep is None:
            self._sweep = conn.loop.call_later(self.keepalive_s, self._close_expired, conn.loop)

    def _discard(self, conn: Connection) -> None:
        conn.disarm()
        conn.abort()
        self._open.discard(conn)

    def _close_expired(self, loop: asyncio.AbstractEventLoop) -> None:
        self._sweep = None
        now = loop.time()
        for idle in self._idle.values():
            expired = [c for c in idle if c.closed or now - c.idle_since >= self.keepalive_s]
            for conn in expired:
                idle.remove(conn)
                self._discard(conn)
        if any(self._idle.values()):
            self._sweep = loop.call_later(self.keepalive_s, self._close_expired, loop)

    async def close(self) -> None:
        """Drops every connection, idle or busy; later requests fail."""
        self._closed = True
        if self._sweep is not None:
            self._sweep.cancel()
        busy = list(self._open)
        for conn in busy:
            self._discard(conn)
        self._idle.clear()
        if busy:
            await asyncio.sleep(0)  # the transports close their sockets in the next loop turn


class StreamResponse:
    """An answer whose body is read as it arrives. `async with` gives the connection back to the pool when the
    body was read to its end, and closes it otherwise."""

    def __init__(self, pool: ConnectionPool, conn: Connection) -> None:
        self.status = conn.status
        self.headers = conn.headers
        self._pool = pool
        self._conn = conn
        self._closed = False

    async def chunks(self) -> AsyncIterator[bytes]:
        """Body bytes as they come; raises TimeoutError or UpstreamConnectionError if the upstream stalls or
        breaks off."""
        conn = self._conn
        while True:
            if conn.chunks:
                yield conn.take()
            elif conn.error is not None:
                raise conn.error
            elif conn.complete:
                return
            else:
                await conn.wait()

    async def read(self) -> bytes:
        return b"".join([chunk async for chunk in self.chunks()])

    def close(self, *, reuse: bool = True) -> None:
        """Once only; later calls do nothing. With `reuse`, a body not read to its end (a stream ends at its last
        event, before the chunked body's terminator may have come) is drained in the background and the connection
        reused if that ends soon; without it (the reader gave up: a client left, a guardrail blocked) the
        connection is closed at once, which tells the upstream to stop generating."""
        if self._closed:
            return
        self._closed = True
        conn = self._conn
        if reuse and conn.error is None and not conn.complete and not conn.closed:
            conn.drain(self._pool._finish)
        else:
            self._pool._finish(conn)

    async def __aenter__(self) -> StreamResponse:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, *exc_info: object) -> None:
        self.close(reuse=exc_type is None)
