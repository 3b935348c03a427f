"""The request path does no database round trip, with every governance stage on."""

from __future__ import annotations

import contextvars
from collections.abc import Iterator

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import event

from tests.conftest import AUTH, chat

in_test_request = contextvars.ContextVar("in_test_request", default=False)


@pytest.fixture
def queries(app: FastAPI) -> Iterator[list[str]]:
    """SQL statements run on behalf of requests made while `in_test_request` is set (background tasks,
    such as the usage shipper and the key-cache poller, run in their own contexts and are not counted)."""
    seen: list[str] = []

    def count(conn, cursor, statement, parameters, context, executemany) -> None:  # type: ignore[no-untyped-def]
        if in_test_request.get():
            seen.append(statement)

    engine = app.state.services.db.engine.sync_engine
    event.listen(engine, "before_cursor_execute", count)
    yield seen
    event.remove(engine, "before_cursor_execute", count)


async def test_governed_requests_make_no_database_query(client: httpx.AsyncClient, queries: list[str]) -> None:
    r = await client.post("/admin/keys", headers=AUTH, json={"name": "k", "budget": 10, "rpm": 1000, "tpm": 10**6})
    headers = {"authorization": f"Bearer {r.json()['key']}"}
    token = in_test_request.set(True)
    try:
        for body in (chat("demo", "hello"), chat("demo", "hello", stream=True)):
            for _ in range(5):
                assert (await client.post("/v1/chat/completions", headers=headers, json=body)).status_code == 200
        assert (
            await client.post("/v1/embeddings", headers=headers, json={"model": "demo", "input": "x"})
        ).status_code == 200
        assert (await client.get("/v1/models", headers=headers)).status_code == 200
        assert queries == []
        # The counter does see queries made on a request's behalf: an admin read goes to the database.
        assert (await client.get("/admin/keys", headers=AUTH)).status_code == 200
        assert queries
    finally:
        in_test_request.reset(token)
