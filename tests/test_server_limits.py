"""`gateway serve` against hostile clients, over raw sockets: slow heads and bodies get 408, oversized heads 431,
connections over the cap 503, each logged with the peer and the limit, while /healthz keeps answering fast.

Each test runs a real `gateway serve` process (~2 s to start, shared by a module) and waits out timeouts of 0.5 s.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import pickle
import resource
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn
from uvicorn.server import ServerState

from gateway.cli import serve_protocol
from gateway.config import parse_config
from gateway.httpserver import GatewayHttpProtocol, raise_descriptor_limit
from tests.servers import ServedGateway

TIMEOUT_S = 0.5  # header_timeout_s and body_timeout_s of the served gateway
HEALTHZ = b"GET /healthz HTTP/1.1\r\nhost: t\r\nconnection: close\r\n\r\n"


def write_config(folder: Path, **server: object) -> Path:
    config = folder / "gateway.yaml"
    settings = {"header_timeout_s": TIMEOUT_S, "body_timeout_s": TIMEOUT_S, **server}
    config.write_text(
        f"""
models: [{{name: demo, model: fake/echo}}]
database_url: sqlite:///{folder / "gateway.db"}
spool_dir: {folder / "spool"}
server: {json.dumps(settings)}
"""
    )
    return config


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServedGateway]:
    server = ServedGateway(write_config(tmp_path_factory.mktemp("limits"), max_connections=2100)).start()
    yield server
    server.stop()


def connect(server: ServedGateway) -> socket.socket:
    return socket.create_connection(("127.0.0.1", server.port), timeout=5)


def read_all(sock: socket.socket) -> bytes:
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except ConnectionResetError:
        pass
    return data


def answer_of(raw: bytes) -> tuple[int, dict[str, str], dict[str, object]]:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.lower().split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), headers, json.loads(body)


def healthz_ms(server: ServedGateway, times: int = 5) -> float:
    """The slowest of `times` GET /healthz, each on a new connection, in ms."""
    worst = 0.0
    for _ in range(times):
        started = time.perf_counter()
        with connect(server) as sock:
            sock.sendall(HEALTHZ)
            assert read_all(sock).startswith(b"HTTP/1.1 200 OK")
        worst = max(worst, (time.perf_counter() - started) * 1000)
    return worst


def log_of(server: ServedGateway) -> str:
    return server.log_path.read_text()


def test_stalled_body_gets_408_after_body_timeout_and_a_log_line(gateway: ServedGateway) -> None:
    head = b"POST /v1/chat/completions HTTP/1.1\r\nhost: t\r\ncontent-length: 1000\r\n\r\n"
    with connect(gateway) as sock:
        peer = sock.getsockname()
        sock.sendall(head + b'{"model": "demo", "messages": [{"role": "user", "content": "' + b"x" * 20)
        started = time.monotonic()
        raw = read_all(sock)
        waited = time.monotonic() - started
    status, headers, body = answer_of(raw)
    assert status == 408 and headers["connection"] == "close" and headers["x-request-id"].startswith("req_")
    assert body["error"]["code"] == "request_timeout"  # type: ignore[index]
    assert "stalled for 0.5 s" in body["error"]["message"]  # type: ignore[index]
    assert TIMEOUT_S - 0.05 < waited < TIMEOUT_S + 2
    assert f"closed connection from {peer[0]}:{peer[1]}: no request body bytes for server.body_timeout_s (0.5s)" in (
        log_of(gateway)
    )


def test_body_arriving_slowly_but_steadily_is_served(gateway: ServedGateway) -> None:
    body = json.dumps({"model": "demo", "messages": [{"role": "user", "content": "hello"}]}).encode()
    head = b"POST /v1/chat/completions HTTP/1.1\r\nhost: t\r\nauthorization: Bearer nope\r\nconnection: close\r\n"
    with connect(gateway) as sock:
        sock.sendall(head + b"content-length: %d\r\n\r\n" % len(body))
        for i in range(0, len(body), len(body) // 3 + 1):  # 3 pieces 0.3 s apart: 0.9 s in all, each gap < 0.5 s
            time.sleep(0.3)
            sock.sendall(body[i : i + len(body) // 3 + 1])
        status, _, answer = answer_of(read_all(sock))
    assert status == 401  # the app got the whole body: the idle timeout counts gaps, not the whole body's time
    assert answer["error"]["code"] == "invalid_api_key"  # type: ignore[index]


def test_head_dripping_byte_by_byte_gets_408_at_the_header_deadline(gateway: ServedGateway) -> None:
    with connect(gateway) as sock:
        started = time.monotonic()
        sock.sendall(b"GET /healthz HTTP/1.1\r\n")

        def drip() -> None:  # a byte every 0.05 s: each arrives well within the timeout, the head never ends
            try:
                for _ in range(100):
                    sock.sendall(b"x")
                    time.sleep(0.05)
            except OSError:
                pass

        dripper = threading.Thread(target=drip)
        dripper.start()
        status, _, body = answer_of(read_all(sock))
        waited = time.monotonic() - started
        with contextlib.suppress(OSError):  # the server may have closed first: ENOTCONN
            sock.shutdown(socket.SHUT_RDWR)
        dripper.join()
    assert status == 408 and body["error"]["code"] == "request_timeout"  # type: ignore[index]
    assert waited < TIMEOUT_S + 1  # the deadline counts from the connection's opening, not from the last byte


def test_incomplete_head_gets_408_and_a_silent_connection_a_plain_close(gateway: ServedGateway) -> None:
    with connect(gateway) as partial, connect(gateway) as silent:
        peer = silent.getsockname()
        partial.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nhost: t\r\ncontent-le")
        status, _, body = answer_of(read_all(partial))
        assert read_all(silent) == b""  # nothing was asked, so nothing is answered
    assert status == 408 and body["error"]["code"] == "request_timeout"  # type: ignore[index]
    assert "did not arrive within 0.5 s" in body["error"]["message"]  # type: ignore[index]
    log = log_of(gateway)
    assert f"closed connection from {peer[0]}:{peer[1]}: no request within server.header_timeout_s (0.5s)" in log
    assert "request head incomplete within server.header_timeout_s (0.5s); answered 408" in log


def test_second_request_on_a_kept_alive_connection_has_its_own_header_deadline(gateway: ServedGateway) -> None:
    with connect(gateway) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nhost: t\r\n\r\n")
        first = sock.recv(65536)
        time.sleep(TIMEOUT_S)  # longer than the first request's deadline: the wait between requests is not counted
        sock.sendall(b"GET /healthz HTTP/1.1\r\nhost: t\r\n")  # a second head that never ends
        started = time.monotonic()
        status, _, body = answer_of(read_all(sock))
        waited = time.monotonic() - started
    assert first.startswith(b"HTTP/1.1 200 OK")
    assert status == 408 and body["error"]["code"] == "request_timeout"  # type: ignore[index]
    assert TIMEOUT_S - 0.05 < waited < TIMEOUT_S + 1


def test_head_over_max_header_bytes_gets_431_before_more_is_read(gateway: ServedGateway) -> None:
    with connect(gateway) as sock:
        peer = sock.getsockname()
        sock.sendall(b"GET /healthz HTTP/1.1\r\nhost: t\r\nx-big: " + b"a" * 70_000)  # no end of head in sight
        status, headers, body = answer_of(read_all(sock))
    assert status == 431 and headers["connection"] == "close"
    assert body["error"] == {
        "message": "The request's headers exceed this gateway's limit of 65536 bytes.",
        "type": "invalid_request_error",
        "param": None,
        "code": "request_headers_too_large",
    }
    assert f"refused request from {peer[0]}:{peer[1]}: its head exceeds server.max_header_bytes (65536 bytes)" in (
        log_of(gateway)
    )


def test_head_just_under_the_limit_with_its_body_in_the_same_read_is_served(gateway: ServedGateway) -> None:
    body = json.dumps({"model": "demo", "messages": [{"role": "user", "content": "y" * 100_000}]}).encode()
    head = b"POST /v1/chat/completions HTTP/1.1\r\nhost: t\r\nauthorization: Bearer nope\r\nconnection: close\r\n"
    head += b"x-pad: " + b"p" * 60_000 + b"\r\ncontent-length: %d\r\n\r\n" % len(body)
    with connect(gateway) as sock:
        sock.sendall(head + body)  # one write: the head ends inside the read that crosses the limit
        status, _, answer = answer_of(read_all(sock))
    assert status == 401 and answer["error"]["code"] == "invalid_api_key"  # type: ignore[index]


def test_50_mb_header_flood_is_cut_at_the_limit_while_healthz_stays_fast(gateway: ServedGateway) -> None:
    sent = 0
    cut = threading.Event()

    def flood() -> None:
        nonlocal sent
        piece = b"a" * 1_048_576
        with connect(gateway) as sock:
            try:
                sock.sendall(b"GET / HTTP/1.1\r\nx-flood: ")
                for _ in range(50):
                    sock.sendall(piece)
                    sent += len(piece)
            except OSError:
                cut.set()

    flooder = threading.Thread(target=flood)
    flooder.start()
    worst = healthz_ms(gateway, times=10)
    flooder.join(timeout=10)
    assert cut.is_set() and sent < 10 * 1_048_576  # the server closed it long before the 50 MB were sent
    assert worst < 250, f"/healthz took {worst:.1f} ms during the flood"


def test_2000_half_open_connections_are_closed_at_the_deadline_while_healthz_stays_fast(
    gateway: ServedGateway,
) -> None:
    sockets = [connect(gateway) for _ in range(2000)]
    try:
        for sock in sockets:
            sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nhost: t\r\n")  # a head that never ends
        worst = healthz_ms(gateway)
        # Measured: ~5-11 ms once the server has taken the connections; the first probe may wait behind their
        # accepts (~0.2 s on a loaded machine), so the bound is loose. Without the limits this test fails below.
        assert worst < 500, f"/healthz took {worst:.1f} ms with 2,000 half-open connections"
        answers = [read_all(sock) for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()
    assert {answer[:12] for answer in answers} == {b"HTTP/1.1 408"}


def test_connection_over_max_connections_gets_503_and_a_log_line(tmp_path: Path) -> None:
    """Its own gateway (max_connections 20): ~3-8 s, mostly that process's start."""
    server = ServedGateway(write_config(tmp_path, max_connections=20, header_timeout_s=30)).start()
    held = [connect(server) for _ in range(20)]  # the gateway's own start-up probe has closed by now
    try:
        time.sleep(0.2)
        with connect(server) as extra:
            peer = extra.getsockname()
            extra.sendall(HEALTHZ)
            status, headers, body = answer_of(read_all(extra))
        assert status == 503 and headers["connection"] == "close"
        assert body["error"]["code"] == "too_many_connections"  # type: ignore[index]
        held.pop().close()
        time.sleep(0.2)
        assert healthz_ms(server, times=1) < 1000  # a freed place is taken again
    finally:
        for sock in held:
            sock.close()
        server.stop()
    assert f"refused connection from {peer[0]}:{peer[1]}: 20 connections open, server.max_connections is 20" in (
        log_of(server)
    )


def test_serve_protocol_reaches_every_worker_with_the_configured_limits() -> None:
    """uvicorn pickles its config, protocol factory included, into each spawned worker process."""
    config = parse_config({"server": {"max_header_bytes": 2048, "body_timeout_s": 7}}, source="test", env={})
    factory = pickle.loads(pickle.dumps(serve_protocol(config)))
    loop = asyncio.new_event_loop()
    try:
        protocol = factory(uvicorn.Config(app=None), ServerState(), {}, loop)
    finally:
        loop.close()
    assert isinstance(protocol, GatewayHttpProtocol)
    assert (protocol.max_header_bytes, protocol.body_timeout) == (2048, 7)


def test_serve_raises_the_open_file_limit_to_fit_max_connections() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard < 2_000:
        pytest.skip("needs a finite hard open-file limit of 2,000 or more")
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (1_000, hard))
        assert raise_descriptor_limit(1_500) is None
        assert resource.getrlimit(resource.RLIMIT_NOFILE)[0] == 1_756  # the connections and 256 more
        warning = raise_descriptor_limit(hard)
        assert resource.getrlimit(resource.RLIMIT_NOFILE)[0] == hard
        assert warning is not None and f"open-file limit ({hard})" in warning
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
