"""GatewayHttpProtocol: a response's head goes out in the same write as its body, bytes in order, nothing held."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator

import pytest
import uvicorn
from starlette.types import Receive, Scope, Send

from gateway.httpserver import GatewayHttpProtocol, HeadHoldingTransport


class RecordingTransport:
    """Stands in for the socket's transport: records each write (one entry = one system call)."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.writes.append(bytes(data))

    def writelines(self, lines: list[bytes]) -> None:
        self.writes.append(b"".join(lines))

    def close(self) -> None:
        self.closed = True

    def get_extra_info(self, name: str) -> str:
        return f"extra:{name}"


HEAD = b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n"


async def test_head_holding_transport_sends_head_and_body_in_one_write() -> None:
    inner = RecordingTransport()
    transport = HeadHoldingTransport(inner, asyncio.get_running_loop())  # type: ignore[arg-type]
    transport.write(HEAD)
    assert inner.writes == []
    transport.write(b"hello")
    assert inner.writes == [HEAD + b"hello"]
    await asyncio.sleep(0)  # the end-of-turn flush finds nothing left
    assert inner.writes == [HEAD + b"hello"]
    assert transport.get_extra_info("peername") == "extra:peername"  # everything else is the wrapped transport's


async def test_head_holding_transport_flushes_a_lone_head_at_the_end_of_the_turn() -> None:
    inner = RecordingTransport()
    transport = HeadHoldingTransport(inner, asyncio.get_running_loop())  # type: ignore[arg-type]
    transport.write(b"HTTP/1.1 204 No Content\r\n\r\n")
    await asyncio.sleep(0)
    assert inner.writes == [b"HTTP/1.1 204 No Content\r\n\r\n"]


async def test_head_holding_transport_flushes_before_close_and_keeps_order() -> None:
    inner = RecordingTransport()
    transport = HeadHoldingTransport(inner, asyncio.get_running_loop())  # type: ignore[arg-type]
    transport.write(b"not a head")
    transport.write(HEAD)
    transport.writelines([b"hel", b"lo"])
    transport.write(HEAD)
    transport.close()
    assert inner.writes == [b"not a head", HEAD + b"hello", HEAD]
    assert inner.closed


async def test_head_holding_transport_abort_drops_a_held_head() -> None:
    inner = RecordingTransport()
    aborted: list[bool] = []
    inner.abort = lambda: aborted.append(True)  # type: ignore[attr-defined]
    transport = HeadHoldingTransport(inner, asyncio.get_running_loop())  # type: ignore[arg-type]
    transport.write(HEAD)
    transport.abort()
    await asyncio.sleep(0)  # the end-of-turn flush finds nothing: no write after an abort
    assert (inner.writes, aborted) == ([], [True])


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] != "http":
        return
    if scope["path"] == "/stream":
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
        for part in (b"one ", b"two ", b"three"):
            await send({"type": "http.response.body", "body": part, "more_body": True})
            await asyncio.sleep(0.01)
        await send({"type": "http.response.body", "body": b""})
        return
    body = b"x" * int(scope["path"].strip("/") or 5)
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"%d" % len(body))]})
    await send({"type": "http.response.body", "body": body})


@pytest.fixture
async def served() -> AsyncIterator[uvicorn.Server]:
    config = uvicorn.Config(app, host="127.0.0.1", port=0, http=GatewayHttpProtocol, lifespan="off", log_level="error")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.01)
    yield server
    server.should_exit = True
    await task


def exchange(server: uvicorn.Server, requests: bytes) -> bytes:
    """Sends raw requests on one connection (the last one asking to close it) and reads until the server closes."""
    port = server.servers[0].sockets[0].getsockname()[1]
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(requests)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
        return data


async def test_served_responses_keep_their_bytes_over_keep_alive(served: uvicorn.Server) -> None:
    requests = b"GET /5 HTTP/1.1\r\nhost: t\r\n\r\nGET /200000 HTTP/1.1\r\nhost: t\r\nconnection: close\r\n\r\n"
    raw = await asyncio.to_thread(exchange, served, requests)
    first, _, rest = raw.partition(b"\r\n\r\n")
    assert first.startswith(b"HTTP/1.1 200 OK\r\n") and b"content-length: 5" in first
    assert rest.startswith(b"xxxxxHTTP/1.1 200 OK\r\n")
    second, _, body = rest[5:].partition(b"\r\n\r\n")
    assert b"content-length: 200000" in second
    assert body == b"x" * 200_000


async def test_served_stream_arrives_chunked_and_complete(served: uvicorn.Server) -> None:
    request = b"GET /stream HTTP/1.1\r\nhost: t\r\nconnection: close\r\n\r\n"
    reading = asyncio.create_task(asyncio.to_thread(exchange, served, request))
    while not served.server_state.connections:
        await asyncio.sleep(0.002)
    assert [type(p.transport) for p in served.server_state.connections] == [HeadHoldingTransport]  # type: ignore[attr-defined]
    raw = await reading
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK") and b"transfer-encoding: chunked" in head
    assert body == b"4\r\none \r\n4\r\ntwo \r\n5\r\nthree\r\n0\r\n\r\n"
