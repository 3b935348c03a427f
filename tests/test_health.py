"""/healthz and /readyz: GET answers with a body, HEAD with the same status and headers and no body."""

from __future__ import annotations

import httpx
import pytest


@pytest.mark.parametrize("path", ["/healthz", "/readyz"])
async def test_health_head_answers_like_get_without_a_body(client: httpx.AsyncClient, path: str) -> None:
    got = await client.get(path)
    head = await client.head(path)
    assert got.status_code == head.status_code == 200
    assert head.content == b""
    assert head.headers["content-type"] == "application/json"
    assert head.headers["content-length"] == str(len(got.content))
    assert head.headers["x-request-id"].startswith("req_")
