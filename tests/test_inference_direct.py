"""The direct path end to end: ASGI app -> our connection pool -> a real fake OpenAI server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import re
import time

import httpx
import orjson
import pytest

from tests.conftest import AUTH, MakeConfig, chat
from tests.fake_upstream import FakeUpstream, Reply


def sse_data(text: str) -> list[str]:
    return [block[6:] for block in text.split("\n\n") if block.startswith("data: ")]


async def test_chat_forwards_body_and_returns_upstream_bytes(client: httpx.AsyncClient, upstream: FakeUpstream) -> None:
    body = chat("gpt-test", "hello world", seed=7, logprobs=True, response_format={"type": "json_object"}, x_vendor=1)
    r = await client.post("/v1/chat/completions", headers=AUTH, json=body)
    assert r.status_code == 200, r.text
    assert r.json()["choices"][0]["message"]["content"] == "hello world"
    assert r.headers["x-request-id"].startswith("req_")
    assert float(r.headers["x-gateway-overhead-ms"]) >= 0
    received = upstream.last
    assert received.path == "/v1/chat/completions"
    assert received.headers["authorization"] == "Bearer sk-upstream-secret"
    assert received.body == {**body, "model": "gpt-4o-mini"}  # unknown fields forwarded, model mapped


async def test_chat_tools_and_n_pass_through(client: httpx.AsyncClient, upstream: FakeUpstream) -> None:
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]
    r = await client.post(
        "/v1/chat/completions",
        headers=AUTH,
        json=chat("gpt-test", "weather?", tools=tools, tool_choice="required", n=2),
    )
    assert r.status_code == 200
    choices = r.json()["choices"]
    assert len(choices) == 2
    assert choices[0]["message"]["tool_calls"][0]["function"]["name"] == "get_weather"
    assert upstream.last.body is not None and upstream.last.body["tools"] == tools


async def test_chat_stream_relays_events_in_order(client: httpx.AsyncClient, upstream: FakeUpstream) -> None:
    body = chat("gpt-test", "one two three", stream=True, stream_options={"include_usage": True})
    async with client.stream("POST", "/v1/chat/completions", headers=AUTH, json=body) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        assert "x-gateway-overhead-ms" in r.headers
        text = (await r.aread()).decode()
    events = sse_data(text)
    assert events[-1] == "[DONE]"
    chunks = [orjson.loads(e) for e in events[:-1]]
    content = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert content == "one two three"
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] == 3


async def test_completions_and_embeddings_take_the_same_path(client: httpx.AsyncClient, upstream: FakeUpstream) -> None:
    r = await client.post("/v1/completions", headers=AUTH, json={"model": "gpt-test", "prompt": "say this"})
    assert r.status_code == 200 and r.json()["choices"][0]["text"] == "say this"
    assert upstream.last.path == "/v1/completions"
    r = await client.post(
        "/v1/embeddings", headers=AUTH, json={"model": "gpt-test", "input": ["a", "b"], "dimensions": 4}
    )
    assert r.status_code == 200
    assert [len(d["embedding"]) for d in r.json()["data"]] == [4, 4]
    assert upstream.last.path == "/v1/embeddings" and upstream.last.body == {
        "model": "gpt-4o-mini",
        "input": ["a", "b"],
        "dimensions": 4,
    }


@pytest.mark.parametrize(
    ("raw", "status", "param"),
    [
        (b"{not json", 400, None),
        (b'{"messages": [{"role": "user", "content": "x"}]}', 400, "model"),
        (b'{"model": "gpt-test"}', 400, "messages"),
        (b'{"model": "gpt-test", "messages": []}', 400, "messages"),
        (b'{"model": "gpt-test", "messages": [{"role": "user", "content": "x"}], "n": 500}', 400, "n"),
        (b'{"model": "no-such-model", "messages": [{"role": "user", "content": "x"}]}', 404, "model"),
    ],
)
async def test_bad_input_gets_openai_error_and_never_reaches_upstream(
    client: httpx.AsyncClient, upstream: FakeUpstream, raw: bytes, status: int, param: str | None
) -> None:
    r = await client.post("/v1/chat/completions", headers={**AUTH, "content-type": "application/json"}, content=raw)
    assert r.status_code == status
    error = r.json()["error"]
    assert error["param"] == param and error["message"]
    assert "x-request-id" in r.headers
    assert upstream.requests == []


@pytest.mark.parametrize("auth", [None, "Bearer wrong-key-000000", "Basic abc"])
async def test_missing_or_wrong_key_is_401(client: httpx.AsyncClient, upstream: FakeUpstream, auth: str | None) -> None:
    headers = {"authorization": auth} if auth else {}
    r = await client.post("/v1/chat/completions", headers=headers, json=chat("gpt-test"))
    assert r.status_code == 401
    assert r.json()["error"]["type"] == "authentication_error"
    assert "wrong-key-000000" not in r.text  # the key is never echoed whole
    r = await client.get("/v1/models", headers=headers)
    assert r.status_code == 401
    assert upstream.requests == []


async def test_body_over_limit_is_413(make_config: MakeConfig, upstream: FakeUpstream) -> None:
    from gateway.app import create_app

    app = create_app(make_config(max_request_bytes=1000))
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://g") as c:
            r = await c.post("/v1/chat/completions", headers=AUTH, json=chat("gpt-test", "x" * 2000))
    assert r.status_code == 413
    assert r.json()["error"]["code"] == "request_too_large"
    assert upstream.requests == []


async def test_body_over_the_default_4_mib_is_413(client: httpx.AsyncClient, upstream: FakeUpstream) -> None:
    text = "x" * (4 * 1024 * 1024)  # the body is this and its JSON framing: just over 4 MiB
    r = await client.post("/v1/chat/completions", headers=AUTH, json=chat("gpt-test", text))
    assert r.status_code == 413
    assert "limit of 4194304 bytes" in r.json()["error"]["message"]
    assert upstream.requests == []


async def test_upstream_5xx_is_retried_then_succeeds(client: httpx.AsyncClient, upstream: FakeUpstream) -> None:
    upstream.fail_next(503, times=2)
    r = await client.post("/v1/chat/completions", headers=AUTH, json=chat("gpt-test", "again"))
    assert r.status_code == 200
    assert len(upstream.requests) == 3


async def test_upstream_errors_keep_their_meaning(client: httpx.AsyncClient, upstream: FakeUpstream) -> None:
    upstream.fail_next(400, message="bad temperature")
    r = await client.post("/v1/chat/completions", headers=AUTH, json=chat("gpt-test"))
    assert r.status_code == 400 and "bad temperature" in r.json()["error"]["message"]
    assert len(upstream.requests) == 1  # a 400 is never retried
    upstream.reset()
    upstream.fail_next(429, times=3)
    r = await client.post("/v1/chat/completions", headers=AUTH, json=chat("gpt-test"))
    assert r.status_code == 429 and r.json()["error"]["type"] == "rate_limit_error"
    assert len(upstream.requests) == 3  # max_retries 2: three attempts
    upstream.reset()
    upstream.fail_next(500, times=3)
    r = await client.post("/v1/chat/completions", headers=AUTH, json=chat("gpt-test"))
    assert r.status_code == 502 and r.json()["error"]["code"] == "provider_error"


async def test_upstream_garbage_is_502(client: httpx.AsyncClient, upstream: FakeUpstream) -> None:
    upstream.script(Reply(raw=b"<html>oops</html>", headers={"content-type": "text/html"}))
    r = await client.post("/v1/chat/completions", headers=AUTH, json=chat("gpt-test"))
    assert r.status_code == 502
    assert "not a JSON object" in r.json()["error"]["message"]


async def test_upstream_redirect_is_502_naming_where_it_points(
    client: httpx.AsyncClient, upstream: FakeUpstream
) -> None:
    upstream.script(Reply(status=307, raw=b"", headers={"location": "https://api.example.com/v2/chat/completions"}))
    r = await client.post("/v1/chat/completions", headers=AUTH, json=chat("gpt-test"))
    assert r.status_code == 502
    message = r.json()["error"]["message"]
    assert "answered 307, a redirect to https://api.example.com/v2/chat/completions" in message
    assert "set api_base" in message
    assert len(upstream.requests) == 1  # a redirect is configuration, not a failure worth retrying


async def test_upstream_timeout_is_504(make_config: MakeConfig, upstream: FakeUpstream) -> None:
    from gateway.app import create_app

    config = make_config(
        models=[{"name": "gpt-test", "model": "openai/x", "api_base": upstream.base_url, "timeout_s": 0.2}]
    )
    upstream.script(Reply(delay_s=1.0))
    app = create_app(config)
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://g") as c:
            r = await c.post("/v1/chat/completions", headers=AUTH, json=chat("gpt-test"))
    assert r.status_code == 504
    assert r.json()["error"]["code"] == "provider_timeout"


async def test_fallback_answers_when_primary_fails(make_config: MakeConfig, upstream: FakeUpstream) -> None:
    from gateway.app import create_app

    config = make_config(
        models=[
            {"name": "primary", "model": "fake/error:503", "fallbacks": ["backup"], "max_retries": 1},
            {"name": "backup", "model": "openai/gpt-backup", "api_base": upstream.base_url},
        ]
    )
    app = create_app(config)
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://g") as c:
            r = await c.post("/v1/chat/completions", headers=AUTH, json=chat("primary", "via backup"))
    assert r.status_code == 200
    assert r.json()["choices"][0]["message"]["content"] == "via backup"
    assert upstream.last.body is not None and upstream.last.body["model"] == "gpt-backup"


async def test_stream_error_before_first_byte_is_an_http_error(
    client: httpx.AsyncClient, upstream: FakeUpstream
) -> None:
    upstream.fail_next(404, message="no such model upstream")
    r = await client.post("/v1/chat/completions", headers=AUTH, json=chat("gpt-test", stream=True))
    assert r.status_code == 404
    assert "no such model upstream" in r.json()["error"]["message"]


async def test_stream_broken_midway_ends_with_error_event(client: httpx.AsyncClient, upstream: FakeUpstream) -> None:
    upstream.script(
        Reply(
            stream_events=[{"choices": [{"index": 0, "delta": {"content": w}}]} for w in "abcd"],
            close_after_events=2,
        )
    )
    r = await client.post("/v1/chat/completions", headers=AUTH, json=chat("gpt-test", stream=True))
    assert r.status_code == 200
    events = sse_data(r.text)
    assert len(events) == 3
    assert orjson.loads(events[-1])["error"]["code"] == "provider_error"
    assert len(upstream.requests) == 1  # never retried once the stream had started


@pytest.mark.parametrize("leaves_after_s", [0.3, 0.02])  # after and before the watch starts (WATCH_AFTER_S)
async def test_client_disconnect_cancels_upstream_request(
    make_config: MakeConfig, upstream: FakeUpstream, leaves_after_s: float
) -> None:
    import uvicorn

    from gateway.app import create_app

    upstream.script(Reply(delay_s=3.0))
    server = uvicorn.Server(uvicorn.Config(create_app(make_config()), host="127.0.0.1", port=0, log_level="warning"))
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as c:
            with pytest.raises(httpx.ReadTimeout):
                await c.post("/v1/chat/completions", headers=AUTH, json=chat("gpt-test"), timeout=leaves_after_s)
        assert await asyncio.to_thread(upstream.wait_for_disconnects, 1) == 1
    finally:
        server.should_exit = True
        await task


async def test_every_response_carries_request_id_and_overhead(
    client: httpx.AsyncClient, upstream: FakeUpstream
) -> None:
    upstream.fail_next(500, times=3)
    responses = [
        await client.post("/v1/chat/completions", headers=AUTH, json=chat("gpt-test")),  # 502 after retries
        await client.post("/v1/chat/completions", json=chat("gpt-test")),  # 401
        await client.get("/v1/models", headers=AUTH),
        await client.get("/healthz"),
        await client.get("/no/such/route"),
    ]
    assert [r.status_code for r in responses] == [502, 401, 200, 200, 404]
    ids = [r.headers["x-request-id"] for r in responses]
    for r, request_id in zip(responses, ids, strict=True):
        assert re.fullmatch(r"req_[0-9a-f]{28}", request_id), request_id
        assert float(r.headers["x-gateway-overhead-ms"]) >= 0
    assert len(set(ids)) == 5
    # Time first (milliseconds), so ids sort in arrival order and the usage table's index grows at its end.
    assert [i[4:16] for i in ids] == sorted(i[4:16] for i in ids)
    assert abs(int(ids[-1][4:16], 16) / 1000 - time.time()) < 60
