"""FakeUpstream: a scriptable OpenAI-compatible HTTP server on 127.0.0.1 that tests use as the provider."""

from __future__ import annotations

import asyncio
import itertools
import threading
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Self

import orjson
from aiohttp import web
from multidict import CIMultiDict

from tests.fake_openai import (
    POST_ROUTES,
    BadRequest,
    JSONObject,
    build_error,
    encode_event,
    load_object,
)

DEFAULT_MODELS = ("gpt-4o-mini", "gpt-4o", "text-embedding-3-small")


@dataclass(frozen=True, slots=True)
class Reply:
    """One scripted answer. Body precedence: raw, json, stream_events, then the route's default echo
    (status < 400) or an OpenAI error body (status >= 400); delay and stream controls apply to all."""

    status: int = 200
    json: object | None = None
    raw: bytes | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    delay_s: float = 0
    stream_events: Sequence[bytes | Mapping[str, object]] | None = None
    close_after_events: int | None = None
    event_delay_s: float = 0


@dataclass(frozen=True, slots=True)
class Received:
    """One request as the server saw it; header names are lower-case, body is None unless a JSON object."""

    method: str
    path: str
    headers: dict[str, str]
    body: JSONObject | None
    raw: bytes = b""


class Hold:
    """A request parked by FakeUpstream.hold() until release(); `arrived` is set when it comes in,
    `cancelled` when its client hangs up before the answer is complete."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.arrived = threading.Event()
        self.cancelled = threading.Event()
        self._loop = loop
        self._gate = asyncio.Event()  # binds to the server loop on first wait(), not here
        self._reply: Reply | None = None

    def release(self, reply: Reply | None = None) -> None:
        """Let the request go on, answered by `reply` or by the default behaviour."""
        self._reply = reply
        if not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._gate.set)

    async def wait(self) -> Reply:
        await self._gate.wait()
        return self._reply or Reply()


@dataclass(frozen=True, slots=True)
class _Script:
    path: str | None
    reply: Reply
    hold: Hold | None = None

    def matches(self, method: str, path: str) -> bool:
        if self.path is None:
            return method == "POST"
        return path in (self.path, "/v1" + self.path)


class _ClientGone(Exception):
    """The client hung up mid-stream; carries the response aiohttp should try, and fail, to finish."""

    def __init__(self, response: web.StreamResponse) -> None:
        self.response = response


class FakeUpstream:
    """An aiohttp server in its own thread and loop; echoes OpenAI calls unless a test scripts a Reply."""

    def __init__(self, *, models: Sequence[str] = DEFAULT_MODELS, record: bool = True) -> None:
        self._models = tuple(models)
        self._record = record
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._requests: list[Received] = []
        self._scripts: deque[_Script] = deque()
        self._disconnects = 0
        self._generation = 0  # bumped by reset(): late disconnects of an earlier test do not count
        self._ids = itertools.count(1)
        self._in_flight: dict[asyncio.Task[Any], int] = {}
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop_event: asyncio.Event | None = None
        self._port: int | None = None
        self._stopping = False

    # lifecycle

    def start(self) -> Self:
        if self._thread is not None:
            raise RuntimeError("FakeUpstream is already running; call stop() first.")
        ready = threading.Event()
        errors: list[BaseException] = []
        self._stopping = False
        self._thread = threading.Thread(
            target=lambda: asyncio.run(self._serve(ready, errors)), name="fake-upstream", daemon=True
        )
        self._thread.start()
        ready.wait()
        if errors:
            self._thread.join()
            self._thread = None
            raise errors[0]
        return self

    def stop(self) -> None:
        """Cancel in-flight requests, close every connection and the listener, and join the thread."""
        if self._thread is None:
            return
        assert self._loop is not None and self._stop_event is not None
        self._loop.call_soon_threadsafe(self._stop_event.set)
        self._thread.join()
        self._thread = None
        self._port = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    async def _serve(self, ready: threading.Event, errors: list[BaseException]) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop_event = asyncio.Event()
        # handler_cancellation: without it (aiohttp's default since 3.7) a handler sleeping in
        # delay_s never learns that its client hung up, so disconnects could not be counted.
        server = web.Server(self._handle, handler_cancellation=True, access_log=None)
        runner = web.ServerRunner(server, shutdown_timeout=1.0)
        try:
            await runner.setup()
            await web.TCPSite(runner, "127.0.0.1", 0).start()
            self._port = runner.addresses[0][1]
        except BaseException as exc:
            errors.append(exc)
            await runner.cleanup()
            return
        finally:
            ready.set()
        await self._stop_event.wait()
        self._stopping = True
        for task in self._in_flight:
            task.cancel()
        await runner.cleanup()

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("FakeUpstream is not running; use `with FakeUpstream() as up:`.")
        return self._port

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    # what tests script and inspect

    def script(self, *replies: Reply, path: str | None = None) -> None:
        """Queue one-shot replies (FIFO) for the next matching requests: any POST, or `path`
        (given with or without the /v1 prefix) for any method."""
        with self._lock:
            self._scripts.extend(_Script(path, reply) for reply in replies)

    def fail_next(self, status: int, times: int = 1, *, message: str | None = None, path: str | None = None) -> None:
        """Queue `times` OpenAI-shaped error answers with this status."""
        self.script(*[Reply(status=status, json=build_error(status, message))] * times, path=path)

    def hold(self, *, path: str | None = None) -> Hold:
        """Queue a request that waits, unanswered, until the returned Hold is released."""
        if self._loop is None or self._thread is None:
            raise RuntimeError("FakeUpstream is not running.")
        hold = Hold(self._loop)
        with self._lock:
            self._scripts.append(_Script(path, Reply(), hold))
        return hold

    def reset(self) -> None:
        """Forget requests, queued scripts and disconnects; drop requests still in flight."""
        with self._lock:
            self._requests.clear()
            self._scripts.clear()
            self._disconnects = 0
            self._generation += 1
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._drop_in_flight)

    @property
    def requests(self) -> list[Received]:
        with self._lock:
            return list(self._requests)

    @property
    def last(self) -> Received:
        with self._lock:
            if not self._requests:
                raise AssertionError("FakeUpstream has received no request.")
            return self._requests[-1]

    @property
    def pending(self) -> int:
        """Scripted replies not consumed yet."""
        with self._lock:
            return len(self._scripts)

    @property
    def disconnects(self) -> int:
        """Clients that hung up before their answer was complete; a snapshot, see wait_for_disconnects."""
        with self._lock:
            return self._disconnects

    def wait_for_disconnects(self, count: int = 1, *, timeout: float = 2.0) -> int:
        """Block until `count` disconnects were seen (or timeout) and return the number seen: the
        server notices a hang-up on its own thread a moment after the client gives up."""
        with self._changed:
            self._changed.wait_for(lambda: self._disconnects >= count, timeout)
            return self._disconnects

    def wait_for_requests(self, count: int = 1, *, timeout: float = 2.0) -> list[Received]:
        """Block until `count` requests were received (or timeout) and return them."""
        with self._changed:
            self._changed.wait_for(lambda: len(self._requests) >= count, timeout)
            return list(self._requests)

    # the server side, on the server thread

    def _drop_in_flight(self) -> None:
        for task, generation in self._in_flight.items():
            if generation < self._generation:
                task.cancel()

    def _take_script(self, received: Received) -> tuple[_Script | None, int]:
        with self._changed:
            if self._record:
                self._requests.append(received)
                self._changed.notify_all()
            script = next((s for s in self._scripts if s.matches(received.method, received.path)), None)
            if script is not None:
                self._scripts.remove(script)
            return script, self._generation

    def _count_disconnect(self, script: _Script | None, generation: int) -> None:
        with self._changed:
            if generation != self._generation:
                return  # dropped by reset(), or a late hang-up from an earlier test
            self._disconnects += 1
            self._changed.notify_all()
        if script is not None and script.hold is not None:
            script.hold.cancelled.set()

    async def _handle(self, request: web.BaseRequest) -> web.StreamResponse:
        raw = await request.read()
        headers = {k.lower(): v for k, v in request.headers.items()}
        received = Received(request.method, request.path, headers, load_object(raw), raw)
        script, generation = self._take_script(received)
        task = asyncio.current_task()
        assert task is not None
        self._in_flight[task] = generation
        try:
            return await self._answer(request, received.body, script)
        except asyncio.CancelledError:
            if not self._stopping:
                self._count_disconnect(script, generation)
            raise
        except _ClientGone as gone:
            self._count_disconnect(script, generation)
            return gone.response  # aiohttp's write_eof fails with a ConnectionError, which it swallows
        finally:
            del self._in_flight[task]

    async def _answer(
        self, request: web.BaseRequest, body: JSONObject | None, script: _Script | None
    ) -> web.StreamResponse:
        reply = script.reply if script is not None else _DEFAULT_REPLY
        if script is not None and script.hold is not None:
            script.hold.arrived.set()
            reply = await script.hold.wait()
        if reply.delay_s:
            await asyncio.sleep(reply.delay_s)
        if reply.raw is not None:
            return _json_response(reply.status, reply.raw, reply.headers)
        if reply.json is not None:
            return _json_response(reply.status, orjson.dumps(reply.json), reply.headers)
        if reply.stream_events is not None:
            return await _stream(request, reply, [encode_event(e) for e in reply.stream_events])
        if reply.status >= 400:
            return _json_response(reply.status, orjson.dumps(build_error(reply.status)), reply.headers)
        return await self._answer_default(request, body, reply)

    async def _answer_default(
        self, request: web.BaseRequest, body: JSONObject | None, reply: Reply
    ) -> web.StreamResponse:
        if request.method == "GET" and (request.path == "/v1/models" or request.path.startswith("/v1/models/")):
            return self._answer_models(request.path.removeprefix("/v1/models").strip("/"))
        builders = POST_ROUTES.get(request.path) if request.method == "POST" else None
        if builders is None:
            message = f"Unknown request URL: {request.method} {request.path}."
            return _json_response(404, orjson.dumps(build_error(404, message, code="unknown_url")))
        build, build_stream = builders
        try:
            if body is None:
                raise BadRequest("The request body must be a JSON object.")
            if body.get("stream") and build_stream is not None:
                return await _stream(request, reply, build_stream(body, next(self._ids)))
            return _json_response(reply.status, orjson.dumps(build(body, next(self._ids))), reply.headers)
        except BadRequest as exc:
            return _json_response(400, orjson.dumps(build_error(400, str(exc))))

    def _answer_models(self, model_id: str) -> web.Response:
        cards = [{"id": m, "object": "model", "created": 1700000000, "owned_by": "fake"} for m in self._models]
        if not model_id:
            return _json_response(200, orjson.dumps({"object": "list", "data": cards}))
        card = next((c for c in cards if c["id"] == model_id), None)
        if card is None:
            return _json_response(404, orjson.dumps(build_error(404, f"The model '{model_id}' does not exist")))
        return _json_response(200, orjson.dumps(card))


_DEFAULT_REPLY = Reply()


def _json_response(status: int, body: bytes, headers: Mapping[str, str] | None = None) -> web.Response:
    merged = CIMultiDict({"Content-Type": "application/json"})
    merged.update(headers or {})
    return web.Response(status=status, body=body, headers=merged)


async def _stream(request: web.BaseRequest, reply: Reply, events: list[bytes]) -> web.StreamResponse:
    """Write each event as its own chunk; raises _ClientGone when the client hangs up mid-stream."""
    headers = CIMultiDict({"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
    headers.update(reply.headers)
    response = web.StreamResponse(status=reply.status, headers=headers)
    cut = reply.close_after_events
    try:
        await response.prepare(request)
        for sent, event in enumerate(events if cut is None else events[:cut]):
            if sent and reply.event_delay_s:
                await asyncio.sleep(reply.event_delay_s)
            await response.write(event)
    except ConnectionResetError as exc:
        raise _ClientGone(response) from exc
    if cut is not None and request.transport is not None:
        # close() flushes what was written, then FIN without the terminating chunk; aiohttp's own
        # write_eof then fails with a ConnectionError, which it swallows.
        request.transport.close()
    return response
