"""uvicorn's httptools protocol, with each response's head sent in one write with the start of its body.

uvicorn writes a response's status line and headers as soon as the app sends `http.response.start`, then the
body on `http.response.body`: two system calls and two TCP segments per response, where the head's write was
the costliest line of the hot path (bench/PROFILE.md). Here the head waits for the next write on the same
connection, or for the end of the event loop's current turn, whichever comes first, so nothing is delayed
beyond the turn that produced it and the bytes keep their order.
"""

from __future__ import annotations

import asyncio

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


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
    """Selected with `uvicorn.run(http="gateway.httpserver:GatewayHttpProtocol")` by `gateway serve`."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(HeadHoldingTransport(transport, self.loop))  # type: ignore[arg-type]
