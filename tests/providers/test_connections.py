"""gateway.providers.connections against real sockets on 127.0.0.1: a raw-bytes server scripted per test."""

from __future__ import annotations

import asyncio
import gzip
import random
import shutil
import socket
import ssl
import struct
import subprocess
import time
import zlib
from pathlib import Path

import pytest

from gateway import __version__
from gateway.providers import connections
from gateway.providers.connections import ConnectionPool, UpstreamConnectionError, UpstreamProtocolError
from gateway.providers.endpoints import make_endpoint
from tests.providers.raw_server import (
    HEAD_CHUNKED,
    LAST,
    Peer,
    RawServer,
    Serve,
    answer,
    chunk,
    ok,
    per_connection,
    within,
)
from tests.servers import free_port


# 1. The request bytes
async def test_request_bytes_carry_path_host_length_headers_and_body(serve: Serve, pool: ConnectionPool) -> None:
    server = await serve(answer(ok()))
    headers = {"Authorization": "Bearer sk-1", "X-Custom": "v 1"}
    endpoint = server.endpoint("http", "/v1/chat/completions?api-version=2024-01&x=1", **headers)
    body = b'{"model": "m", "text": "h\xc3\xa9llo"}'
    assert await pool.fetch(endpoint, body, timeout_s=1) == (200, {"content-length": "2"}, b"ok")
    head, _, received_body = server.requests[0].partition(b"\r\n\r\n")
    request_line, *lines = head.decode("latin-1").split("\r\n")
    fields = [line.split(": ", 1) for line in lines]
    sent = {name.lower(): value for name, value in fields}
    assert request_line == "POST /v1/chat/completions?api-version=2024-01&x=1 HTTP/1.1"
    assert len(fields) == len(sent)  # no header twice
    assert sent == {
        "host": f"127.0.0.1:{server.port}",
        "user-agent": f"llm-gateway/{__version__}",
        "accept-encoding": "identity",
        "authorization": "Bearer sk-1",
        "x-custom": "v 1",
        "content-length": str(len(body)),
    }
    assert received_body == body


async def test_request_to_ipv6_literal_sends_bracketed_host(serve: Serve, pool: ConnectionPool) -> None:
    try:
        server = await serve(answer(ok()), host="::1")
    except OSError as exc:
        pytest.skip(f"cannot bind ::1: {exc}")
    assert await pool.fetch(server.endpoint(), b"{}", timeout_s=1) == (200, {"content-length": "2"}, b"ok")
    assert f"\r\nhost: [::1]:{server.port}\r\n".encode() in server.requests[0]


# 2. Response framings
PAYLOAD = b'{"choices": [{"text": "' + b"abc " * 2000 + b'"}]}'
GZIPPED, DEFLATED = gzip.compress(PAYLOAD), zlib.compress(PAYLOAD)
REPEATED = b"Set-Cookie: a=1\r\nX-Request-ID: Abc\r\nset-COOKIE: b=2\r\nVary: Accept\r\nVary: Origin\r\n"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b"HTTP/1.1 201 Created\r\nContent-Length: 5\r\n\r\nhello", (201, {"content-length": "5"}, b"hello")),
        (b"HTTP/1.1 204 No Content\r\n\r\n", (204, {}, b"")),
        (b"HTTP/1.1 100 Continue\r\n\r\n" + ok(b"final"), (200, {"content-length": "5"}, b"final")),
        (
            b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n" + ok(b"final", b"x-final: 1\r\n"),
            (200, {"content-length": "5", "x-final": "1"}, b"final"),
        ),
        (
            ok(GZIPPED, b"Content-Encoding: gzip\r\n"),
            (200, {"content-length": str(len(GZIPPED)), "content-encoding": "gzip"}, PAYLOAD),
        ),
        (
            ok(DEFLATED, b"Content-Encoding: deflate\r\n"),
            (200, {"content-length": str(len(DEFLATED)), "content-encoding": "deflate"}, PAYLOAD),
        ),
        (
            ok(b"ok", REPEATED),
            (
                200,
                {"set-cookie": "a=1, b=2", "x-request-id": "Abc", "vary": "Accept, Origin", "content-length": "2"},
                b"ok",
            ),
        ),
    ],
    ids=["content-length", "204-no-body", "100-continue", "103-early-hints", "gzip", "deflate", "repeated-headers"],
)
async def test_fetch_framed_response_returns_status_headers_body_and_keeps_connection(
    serve: Serve, pool: ConnectionPool, raw: bytes, expected: tuple[int, dict[str, str], bytes]
) -> None:
    server = await serve(answer(raw, ok(b"next")))
    assert await pool.fetch(server.endpoint(), b"{}", timeout_s=1) == expected
    assert await pool.fetch(server.endpoint(), b"{}", timeout_s=1) == (200, {"content-length": "4"}, b"next")
    assert server.accepted == 1  # the message's end was found: the connection was reused


async def test_fetch_chunked_body_split_one_byte_per_write_is_reassembled(serve: Serve, pool: ConnectionPool) -> None:
    raw = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-Split: yes\r\n\r\n"
        b"5\r\nhello\r\n1;ext=1\r\n,\r\n6\r\n world\r\n0\r\nx-trailer: t\r\n\r\n"
    )

    async def script(peer: Peer) -> None:
        await peer.read_request()
        for i in range(len(raw)):
            await peer.send(raw[i : i + 1], pause=0.0005)
        await answer(ok())(peer)

    server = await serve(script)
    status, headers, body = await pool.fetch(server.endpoint(), b"{}", timeout_s=1)
    assert (status, headers["x-split"], headers["transfer-encoding"], body) == (200, "yes", "chunked", b"hello, world")
    assert await pool.fetch(server.endpoint(), b"{}", timeout_s=1) == (200, {"content-length": "2"}, b"ok")
    assert server.accepted == 1


async def test_fetch_body_delimited_by_close_returns_whole_body(serve: Serve, pool: ConnectionPool) -> None:
    async def script(peer: Peer) -> None:
        await peer.read_request()
        await peer.send(b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n\r\n", b"first part, ", b"second part")

    server = await serve(per_connection(script, answer(ok(b"next"))))
    status, headers, body = await pool.fetch(server.endpoint(), b"{}", timeout_s=1)
    assert (status, headers, body) == (200, {"content-type": "text/plain"}, b"first part, second part")
    assert (await pool.fetch(server.endpoint(), b"{}", timeout_s=1))[2] == b"next"
    assert server.accepted == 2


# 3. Keep-alive
async def test_fetch_twice_reuses_one_connection(serve: Serve, pool: ConnectionPool) -> None:
    server = await serve(answer(ok(b"one"), ok(b"two")))
    assert (await pool.fetch(server.endpoint(), b"1", timeout_s=1))[2] == b"one"
    assert (await pool.fetch(server.endpoint(), b"2", timeout_s=1))[2] == b"two"
    assert (server.accepted, server.bodies()) == (1, [b"1", b"2"])


@pytest.mark.parametrize(
    "first",
    [ok(b"one", b"Connection: close\r\n"), b"HTTP/1.0 200 OK\r\ncontent-length: 3\r\n\r\none"],
    ids=["connection-close", "http-1.0"],
)
async def test_fetch_after_non_keepalive_response_opens_new_connection(
    serve: Serve, pool: ConnectionPool, first: bytes
) -> None:
    server = await serve(answer(first, ok(b"two")))
    assert (await pool.fetch(server.endpoint(), b"1", timeout_s=1))[2] == b"one"
    await within(server.peers[0].eof.wait())  # the client closed the connection itself
    assert (await pool.fetch(server.endpoint(), b"2", timeout_s=1))[2] == b"two"
    assert server.accepted == 2


async def test_fetch_after_server_closed_idle_connection_uses_new_one(serve: Serve, pool: ConnectionPool) -> None:
    async def close_after_one(peer: Peer) -> None:
        await peer.read_request()
        await peer.send(ok(b"one"))

    server = await serve(per_connection(close_after_one, answer(ok(b"two"))))
    assert (await pool.fetch(server.endpoint(), b"1", timeout_s=1))[2] == b"one"
    await within(server.peers[0].done.wait())
    await asyncio.sleep(0.02)
    assert (await pool.fetch(server.endpoint(), b"2", timeout_s=1))[2] == b"two"
    assert (server.accepted, server.bodies()) == (2, [b"1", b"2"])


async def test_fetch_on_reused_connection_closed_unanswered_is_resent_once(serve: Serve, pool: ConnectionPool) -> None:
    async def answer_one_then_drop(peer: Peer) -> None:
        await peer.read_request()
        await peer.send(ok(b"one"))
        await peer.read_request()  # the upstream's idle timeout races the reuse: read, then closed

    server = await serve(per_connection(answer_one_then_drop, answer(ok(b"two"))))
    assert (await pool.fetch(server.endpoint(), b"1", timeout_s=1))[2] == b"one"
    assert (await pool.fetch(server.endpoint(), b"2", timeout_s=1))[2] == b"two"
    assert (server.accepted, server.bodies()) == (2, [b"1", b"2", b"2"])


async def test_fetch_on_reused_connection_closed_late_is_not_resent(serve: Serve, pool: ConnectionPool) -> None:
    async def answer_one_then_read_and_drop(peer: Peer) -> None:
        await peer.read_request()
        await peer.send(ok(b"one"))
        await peer.read_request()
        await asyncio.sleep(connections.RESEND_WITHIN_S + 0.05)  # read, worked on it, died: never replay a POST

    server = await serve(per_connection(answer_one_then_read_and_drop, answer(ok(b"two"))))
    await pool.fetch(server.endpoint(), b"1", timeout_s=2)
    with pytest.raises(UpstreamConnectionError, match="closed the connection before a complete response"):
        await pool.fetch(server.endpoint(), b"2", timeout_s=2)
    assert server.bodies() == [b"1", b"2"]


async def test_fetch_resends_at_most_once_whatever_the_stale_connections(serve: Serve, pool: ConnectionPool) -> None:
    async def answer_then_read_and_drop(peer: Peer) -> None:
        if (await peer.read_request() or b"").endswith(b"\r\n\r\nx"):
            return  # a new connection for "x": closed at once, unanswered
        await peer.send(ok(b"warm"))
        await peer.read_request()  # closed right after reading: looks like an idle timeout every time

    server = await serve(answer_then_read_and_drop)
    await asyncio.gather(*[pool.fetch(server.endpoint(), b"w", timeout_s=1) for _ in range(3)])  # 3 idle
    with pytest.raises(UpstreamConnectionError):
        await pool.fetch(server.endpoint(), b"x", timeout_s=1)
    assert server.bodies().count(b"x") == 2  # the first try and one resend, on a new connection
    assert server.accepted == 4


# 4. Timeouts
async def test_fetch_never_answered_raises_timeout_after_timeout_s(serve: Serve, pool: ConnectionPool) -> None:
    async def hold(peer: Peer) -> None:
        await peer.read_request()
        await peer.wait_eof()

    server = await serve(hold)
    start = time.monotonic()
    with pytest.raises(TimeoutError):
        await pool.fetch(server.endpoint(), b"{}", timeout_s=0.2)
    assert 0.19 <= time.monotonic() - start < 0.5
    await within(server.peers[0].eof.wait(), 0.5)  # the connection was closed, not left to answer later


async def test_fetch_connect_refused_raises_naming_host_port_quickly(pool: ConnectionPool) -> None:
    port = free_port()
    endpoint = make_endpoint(f"http://127.0.0.1:{port}/v1", {})
    start = time.monotonic()
    with pytest.raises(UpstreamConnectionError, match=f"could not connect to 127.0.0.1:{port}"):
        await pool.fetch(endpoint, b"{}", timeout_s=1)
    assert time.monotonic() - start < 0.3


async def test_fetch_tls_handshake_never_completing_raises_timeout_error(serve: Serve) -> None:
    server = await serve(lambda peer: peer.wait_eof())  # accepts TCP, never speaks TLS
    pool = ConnectionPool(ssl_context=ssl.create_default_context())
    start = time.monotonic()
    try:
        with pytest.raises(TimeoutError):  # "TimeoutError when the timeout passes (connecting included)"
            await pool.fetch(server.endpoint("https"), b"{}", timeout_s=0.2)
    finally:
        await pool.close()
    assert 0.19 <= time.monotonic() - start < 0.5


async def test_stream_silent_after_head_raises_timeout_from_chunks(serve: Serve, pool: ConnectionPool) -> None:
    async def script(peer: Peer) -> None:
        await peer.read_request()
        await peer.send(HEAD_CHUNKED + chunk(b"data: 1\n\n"))
        await peer.wait_eof()

    server = await serve(script)
    async with await pool.open_stream(server.endpoint(), b"{}", timeout_s=0.2) as resp:
        assert resp.status == 200
        received = b""
        start = time.monotonic()
        with pytest.raises(TimeoutError):
            async for data in resp.chunks():
                received += data
    assert received == b"data: 1\n\n"
    assert 0.15 <= time.monotonic() - start < 0.5
    await within(server.peers[0].eof.wait(), 0.5)


async def test_stream_sending_steadily_beyond_timeout_s_does_not_time_out(serve: Serve, pool: ConnectionPool) -> None:
    events = [b"data: %d\n\n" % i for i in range(8)]

    async def script(peer: Peer) -> None:
        await peer.read_request()
        await peer.send(HEAD_CHUNKED)
        await peer.send(*map(chunk, events), pause=0.04)
        await peer.send(LAST)

    server = await serve(script)
    start = time.monotonic()
    async with await pool.open_stream(server.endpoint(), b"{}", timeout_s=0.12) as resp:
        assert await resp.read() == b"".join(events)
    assert time.monotonic() - start > 0.24  # twice timeout_s in all, a chunk every timeout_s / 3


# 5. Broken responses
@pytest.mark.parametrize(
    ("sent", "problem"),
    [
        (b"", "closed the connection before a complete response"),
        (b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nhel", "closed the connection before a complete response"),
        (b"HELLO\r\n\r\n", "invalid HTTP response"),
        (ok(b"\x1b\x00\x00", b"Content-Encoding: br\r\n"), "content-encoding 'br'"),
    ],
    ids=["closed-unanswered", "closed-inside-body", "garbage", "unknown-encoding"],
)
async def test_fetch_broken_answer_on_fresh_connection_raises_without_retry(
    serve: Serve, pool: ConnectionPool, sent: bytes, problem: str
) -> None:
    async def script(peer: Peer) -> None:
        await peer.read_request()
        await peer.send(sent)

    server = await serve(script)
    with pytest.raises(UpstreamConnectionError, match=problem):
        await pool.fetch(server.endpoint(), b"1", timeout_s=1)
    assert (server.accepted, server.bodies()) == (1, [b"1"])


async def test_fetch_response_followed_by_unrequested_response_returns_first_and_drops_connection(
    serve: Serve, pool: ConnectionPool
) -> None:
    two = ok(b"ok", b"x-a: 1\r\n") + b"HTTP/1.1 500 Boom\r\ncontent-length: 3\r\nx-a: 2\r\n\r\nbad"
    server = await serve(answer(two, ok(b"next")))  # both answers in one write: one TCP segment
    assert await pool.fetch(server.endpoint(), b"{}", timeout_s=1) == (200, {"content-length": "2", "x-a": "1"}, b"ok")
    assert (await pool.fetch(server.endpoint(), b"{}", timeout_s=1))[2] == b"next"
    assert server.accepted == 2  # the first connection's state was unknown: not reused


# 6. Streams
async def test_stream_chunks_arrive_in_order_as_sent(serve: Serve, pool: ConnectionPool) -> None:
    first_read = asyncio.Event()

    async def script(peer: Peer) -> None:
        await peer.read_request()
        await peer.send(HEAD_CHUNKED + chunk(b"data: 1\n\n"))
        await first_read.wait()
        await peer.send(chunk(b"data: 2\n\n"), chunk(b"data: 3\n\n") + LAST)

    server = await serve(script)
    async with await pool.open_stream(server.endpoint(), b"{}", timeout_s=1) as resp:
        assert (resp.status, resp.headers["content-type"]) == (200, "text/event-stream")
        chunks = resp.chunks()
        received = b""
        while received != b"data: 1\n\n":  # before the server has sent the rest
            received += await within(anext(chunks))
        first_read.set()
        async for data in chunks:
            received += data
    assert received == b"data: 1\n\ndata: 2\n\ndata: 3\n\n"


async def test_stream_closed_before_terminator_reuses_connection_when_it_comes(
    serve: Serve, pool: ConnectionPool
) -> None:
    async def script(peer: Peer) -> None:
        await peer.read_request()
        await peer.send(HEAD_CHUNKED + chunk(b"data: [DONE]\n\n"))
        await asyncio.sleep(0.05)
        await peer.send(LAST)
        await answer(ok(b"after"))(peer)

    server = await serve(script)
    async with await pool.open_stream(server.endpoint(), b"{}", timeout_s=1) as resp:
        received = b""
        async for data in resp.chunks():
            received += data
            if received.endswith(b"data: [DONE]\n\n"):
                break  # the last event: the caller stops reading here
    await asyncio.sleep(0.15)
    assert (await pool.fetch(server.endpoint(), b"{}", timeout_s=1))[2] == b"after"
    assert server.accepted == 1


async def test_stream_closed_without_terminator_ever_closes_connection_after_drain_s(
    serve: Serve, pool: ConnectionPool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(connections, "DRAIN_S", 0.1)

    async def script(peer: Peer) -> None:
        await peer.read_request()
        await peer.send(HEAD_CHUNKED + chunk(b"data: [DONE]\n\n"))
        await peer.wait_eof()

    server = await serve(per_connection(script, answer(ok(b"after"))))
    async with await pool.open_stream(server.endpoint(), b"{}", timeout_s=1) as resp:
        assert await within(anext(resp.chunks())) == b"data: [DONE]\n\n"
    start = time.monotonic()
    await within(server.peers[0].eof.wait())
    assert 0.08 <= time.monotonic() - start < 0.4
    assert (await pool.fetch(server.endpoint(), b"{}", timeout_s=1))[2] == b"after"
    assert server.accepted == 2


async def test_stream_closed_twice_returns_connection_to_pool_once(serve: Serve, pool: ConnectionPool) -> None:
    server = await serve(answer(ok(b"ok")))
    async with await pool.open_stream(server.endpoint(), b"{}", timeout_s=1) as resp:
        assert await resp.read() == b"ok"
        resp.close()  # and once more by `async with`
    both = pool.fetch(server.endpoint(), b"1", timeout_s=0.2), pool.fetch(server.endpoint(), b"2", timeout_s=0.2)
    results = await within(asyncio.gather(*both), 0.5)  # one connection shared by two requests would hang
    assert [body for _, _, body in results] == [b"ok", b"ok"]
    assert server.accepted == 2


async def test_stream_unread_fast_upstream_is_held_back_and_arrives_intact(serve: Serve, pool: ConnectionPool) -> None:
    payload = random.Random(7).randbytes(8 * 1024 * 1024)
    piece = 64 * 1024
    progress = {"sent": 0}

    async def script(peer: Peer) -> None:
        await peer.read_request()
        await peer.send(HEAD_CHUNKED)
        for at in range(0, len(payload), piece):
            await peer.send(chunk(payload[at : at + piece]))
            progress["sent"] = at + piece
        await peer.send(LAST)
        await answer(ok(b"after"))(peer)

    server = await serve(script)
    async with await pool.open_stream(server.endpoint(), b"{}", timeout_s=1) as resp:
        await asyncio.sleep(0.15)  # the reader reads nothing meanwhile
        assert resp._conn.buffered <= connections.PAUSE_ABOVE + 256 * 1024  # at most one more socket read
        assert progress["sent"] < len(payload)  # the server is stuck in drain(): TCP flow control
        assert server.peers[0].writer.transport.get_write_buffer_size() > 0
        received = await within(resp.read(), 2)
    assert received == payload
    assert (await pool.fetch(server.endpoint(), b"{}", timeout_s=1))[2] == b"after"
    assert server.accepted == 1


async def test_stream_paused_then_complete_and_closed_leaves_a_usable_connection(
    serve: Serve, pool: ConnectionPool
) -> None:
    payload = b"x" * (connections.PAUSE_ABOVE + 64 * 1024)

    async def script(peer: Peer) -> None:
        await peer.read_request()
        await peer.send(HEAD_CHUNKED + chunk(payload) + LAST)  # all of it, while the reader reads nothing
        await answer(ok(b"after"))(peer)

    server = await serve(script)
    async with await pool.open_stream(server.endpoint(), b"{}", timeout_s=5) as resp:
        # The reader reads nothing; the connection takes in the whole answer regardless. Polled, not one fixed
        # sleep: on a slow machine under CI's load 0.1 s was once not enough for ~320 KB over loopback.
        deadline = asyncio.get_running_loop().time() + 3
        while not resp._conn.complete:
            assert asyncio.get_running_loop().time() < deadline, "the whole answer never arrived"
            await asyncio.sleep(0.01)
    assert await within(pool.fetch(server.endpoint(), b"{}", timeout_s=1)) == (200, {"content-length": "5"}, b"after")
    assert server.accepted == 1


async def test_stream_given_up_by_its_reader_closes_the_connection_at_once(serve: Serve, pool: ConnectionPool) -> None:
    async def generate(peer: Peer) -> None:
        await peer.read_request()
        await peer.send(HEAD_CHUNKED + chunk(b"data: 1\n\n"))
        await within(peer.wait_eof(), 0.5)  # the gateway hung up: the upstream can stop generating

    server = await serve(generate)
    with pytest.raises(RuntimeError, match="guardrail"):
        async with await pool.open_stream(server.endpoint(), b"{}", timeout_s=5) as resp:
            async for _ in resp.chunks():
                raise RuntimeError("a guardrail blocked the stream")
    await within(server.peers[0].eof.wait(), 0.3)  # well before DRAIN_S


async def test_fetch_reset_inside_a_close_delimited_body_is_an_error(serve: Serve, pool: ConnectionPool) -> None:
    async def reset_midway(peer: Peer) -> None:
        await peer.read_request()
        await peer.send(b'HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n\r\n{"partial": ')
        sock = peer.writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        peer.writer.transport.abort()  # RST, not FIN: the body is cut, not ended

    server = await serve(reset_midway)
    with pytest.raises(UpstreamConnectionError, match="before a complete response"):
        await pool.fetch(server.endpoint(), b"{}", timeout_s=1)


async def test_fetch_truncated_gzip_body_is_a_protocol_error(serve: Serve, pool: ConnectionPool) -> None:
    packed = gzip.compress(b'{"ok": true}' * 50)[:-12]  # content-length matches, the gzip stream does not end
    server = await serve(answer(ok(packed, b"content-encoding: gzip\r\n")))
    with pytest.raises(UpstreamProtocolError, match="compressed body ends before its end"):
        await pool.fetch(server.endpoint(), b"{}", timeout_s=1)


async def test_fetch_garbage_answer_is_a_protocol_error(serve: Serve, pool: ConnectionPool) -> None:
    server = await serve(answer(b"HELLO\r\n\r\n"))
    with pytest.raises(UpstreamProtocolError, match="invalid HTTP response"):
        await pool.fetch(server.endpoint(), b"{}", timeout_s=1)


# 7. Cancellation
async def test_fetch_cancelled_while_server_holds_answer_closes_connection(serve: Serve, pool: ConnectionPool) -> None:
    held = asyncio.Event()

    async def script(peer: Peer) -> None:
        await peer.read_request()
        held.set()
        await peer.wait_eof()

    server = await serve(per_connection(script, answer(ok(b"after"))))
    task = asyncio.create_task(pool.fetch(server.endpoint(), b"{}", timeout_s=1))
    await within(held.wait())
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await within(server.peers[0].eof.wait(), 0.5)
    assert (await pool.fetch(server.endpoint(), b"{}", timeout_s=1))[2] == b"after"
    assert server.accepted == 2


# 8. Closing and expiry
async def test_pool_close_closes_idle_connections_and_fails_later_fetches(serve: Serve, pool: ConnectionPool) -> None:
    server = await serve(answer(ok()))
    await pool.fetch(server.endpoint(), b"{}", timeout_s=1)
    await pool.close()
    await within(server.peers[0].eof.wait(), 0.5)
    with pytest.raises(UpstreamConnectionError, match="shutting down"):
        await pool.fetch(server.endpoint(), b"{}", timeout_s=1)
    assert server.accepted == 1


async def test_pool_idle_connection_older_than_keepalive_is_closed_not_reused(serve: Serve) -> None:
    server = await serve(answer(ok(b"one"), ok(b"two")))
    pool = ConnectionPool(keepalive_s=0.05)
    try:
        assert (await pool.fetch(server.endpoint(), b"1", timeout_s=1))[2] == b"one"
        start = time.monotonic()
        await within(server.peers[0].eof.wait(), 0.5)  # closed by the sweep, no request needed
        assert time.monotonic() - start >= 0.04
        assert (await pool.fetch(server.endpoint(), b"2", timeout_s=1))[2] == b"two"
    finally:
        await pool.close()
    assert server.accepted == 2


# 9. HTTPS
@pytest.fixture
def tls_cert(tmp_path: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (and its key), made by the openssl command."""
    if shutil.which("openssl") is None:
        pytest.skip("no openssl command to make a certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
        + ["-keyout", str(key), "-out", str(cert), "-days", "1", "-subj", "/CN=127.0.0.1"]
        + ["-addext", "subjectAltName=IP:127.0.0.1"],
        check=True,
        capture_output=True,
    )
    return cert, key


@pytest.fixture
async def tls_server(serve: Serve, tls_cert: tuple[Path, Path]) -> RawServer:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(*tls_cert)
    return await serve(answer(ok(b"secure")), ssl=context)


async def test_https_fetch_with_context_trusting_cert_succeeds(
    tls_server: RawServer, tls_cert: tuple[Path, Path]
) -> None:
    pool = ConnectionPool(ssl_context=ssl.create_default_context(cafile=str(tls_cert[0])))
    try:
        for body in (b"1", b"2"):
            assert (await pool.fetch(tls_server.endpoint("https"), body, timeout_s=1))[2] == b"secure"
    finally:
        await pool.close()
    assert (tls_server.accepted, tls_server.bodies()) == (1, [b"1", b"2"])
    assert f"\r\nhost: 127.0.0.1:{tls_server.port}\r\n".encode() in tls_server.requests[0]


async def test_https_fetch_with_default_context_rejects_self_signed_cert(
    tls_server: RawServer, pool: ConnectionPool
) -> None:
    with pytest.raises(UpstreamConnectionError, match=f"127.0.0.1:{tls_server.port}.*certificate verify failed"):
        await pool.fetch(tls_server.endpoint("https"), b"{}", timeout_s=1)
    assert tls_server.requests == []
