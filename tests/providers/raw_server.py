"""A raw-bytes HTTP server on 127.0.0.1 scripted per test, for the upstream client's tests: each accepted connection
runs a script that reads requests and sends exactly the bytes it is given; the server records what it received."""

from __future__ import annotations

import asyncio
import re
import ssl
from collections.abc import Awaitable, Callable
from contextlib import suppress
from typing import Any

from gateway.providers.endpoints import Endpoint, make_endpoint

HEAD_CHUNKED = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
LAST = b"0\r\n\r\n"


def ok(body: bytes = b"ok", headers: bytes = b"") -> bytes:
    return b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n%s\r\n%s" % (len(body), headers, body)


def chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


class Peer:
    """The server's side of one accepted connection."""

    def __init__(self, server: RawServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.server = server
        self.index = server.accepted - 1
        self.reader = reader
        self.writer = writer
        self.eof = asyncio.Event()  # the client closed (or reset) its side
        self.done = asyncio.Event()  # the script ended and our side is closed

    async def read_request(self) -> bytes | None:
        """One whole request (head and content-length body), recorded in server.requests; None at EOF."""
        try:
            head = await self.reader.readuntil(b"\r\n\r\n")
            length = re.search(rb"(?im)^content-length: *(\d+)\r$", head)
            request = head + await self.reader.readexactly(int(length.group(1)) if length else 0)
        except (asyncio.IncompleteReadError, ConnectionError):
            self.eof.set()
            return None
        self.server.requests.append(request)
        return request

    async def send(self, *parts: bytes, pause: float = 0) -> None:
        for part in parts:
            self.writer.write(part)
            await self.writer.drain()
            if pause:
                await asyncio.sleep(pause)

    async def wait_eof(self) -> None:
        with suppress(ConnectionError):
            while await self.reader.read(65536):
                pass
        self.eof.set()


Script = Callable[[Peer], Awaitable[None]]


class RawServer:
    """asyncio.start_server running `script` for every accepted connection; records what the clients sent."""

    def __init__(self, script: Script) -> None:
        self.script = script
        self.accepted = 0
        self.requests: list[bytes] = []
        self.peers: list[Peer] = []
        self.errors: list[BaseException] = []
        self._tasks: set[asyncio.Task[Any]] = set()

    async def start(self, host: str, ssl_context: ssl.SSLContext | None) -> None:
        self._server = await asyncio.start_server(self._handle, host, 0, ssl=ssl_context)
        self.port = self._server.sockets[0].getsockname()[1]
        self.origin = f"[{host}]:{self.port}" if ":" in host else f"{host}:{self.port}"

    def endpoint(self, scheme: str = "http", path: str = "/v1/chat", **headers: str) -> Endpoint:
        return make_endpoint(f"{scheme}://{self.origin}{path}", headers)

    def bodies(self) -> list[bytes]:
        return [request.partition(b"\r\n\r\n")[2] for request in self.requests]

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self.accepted += 1
        peer = Peer(self, reader, writer)
        self.peers.append(peer)
        try:
            await self.script(peer)
        except asyncio.CancelledError:
            pass  # the test is over
        except Exception as exc:
            self.errors.append(exc)
        finally:
            writer.close()
            with suppress(Exception, asyncio.CancelledError):
                await writer.wait_closed()
            peer.done.set()

    async def stop(self) -> None:
        self._server.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()


Serve = Callable[..., Awaitable[RawServer]]


def answer(*responses: bytes) -> Script:
    """Every request, on any connection, gets the next of `responses` (the last one repeats)."""
    queue = list(responses)

    async def script(peer: Peer) -> None:
        while await peer.read_request() is not None:
            await peer.send(queue.pop(0) if len(queue) > 1 else queue[0])

    return script


def per_connection(first: Script, then: Script) -> Script:
    """`first` on the first accepted connection, `then` on every later one."""

    async def script(peer: Peer) -> None:
        await (first if peer.index == 0 else then)(peer)

    return script


async def within(aw: Awaitable[Any], seconds: float = 1.0) -> Any:
    return await asyncio.wait_for(aw, seconds)
