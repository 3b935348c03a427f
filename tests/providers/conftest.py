"""Fixtures of the upstream client's tests: scripted raw servers (stopped after the test) and a pool."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator

import pytest

from gateway.providers.connections import ConnectionPool
from tests.providers.raw_server import RawServer, Script, Serve


@pytest.fixture
async def serve() -> AsyncIterator[Serve]:
    servers: list[RawServer] = []

    async def start(script: Script, *, host: str = "127.0.0.1", ssl: ssl.SSLContext | None = None) -> RawServer:
        server = RawServer(script)
        await server.start(host, ssl)
        servers.append(server)
        return server

    yield start
    for server in servers:
        await server.stop()
    assert [e for server in servers for e in server.errors] == []


@pytest.fixture
async def pool() -> AsyncIterator[ConnectionPool]:
    pool = ConnectionPool()
    yield pool
    await pool.close()
