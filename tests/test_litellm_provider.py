"""The litellm path: a non-OpenAI vendor (Anthropic) translated both ways, upstream mocked with respx."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import orjson
import pytest
import respx

from tests.conftest import AUTH, MakeConfig, chat

ANTHROPIC = "https://api.anthropic.com"


def anthropic_message(text: str, *, input_tokens: int = 11, output_tokens: int = 3) -> dict[str, object]:
    return {
        "id": "msg_01",
        "type": "message",
        "role": "assistant",
        "model": "claude-3-5-haiku-20241022",
        "content": [{"type": "text", "text": text}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {"input_tokens": input_tokens, "output_tokens": output_tokens},
    }


def anthropic_stream(text: str) -> bytes:
    events = [
        ("message_start", {"type": "message_start", "message": {**anthropic_message(""), "content": []}}),
        (
            "content_block_start",
            {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        ),
        *(
            (
                "content_block_delta",
                {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": w}},
            )
            for w in text.split(" ")
        ),
        ("content_block_stop", {"type": "content_block_stop", "index": 0}),
        (
            "message_delta",
            {"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 2}},
        ),
        ("message_stop", {"type": "message_stop"}),
    ]
    return b"".join(f"event: {name}\ndata: {json.dumps(data)}\n\n".encode() for name, data in events)


@pytest.fixture
def anthropic() -> Iterator[respx.MockRouter]:
    with respx.mock(base_url=ANTHROPIC, assert_all_called=True) as router:
        yield router


@pytest.fixture
def config(make_config: MakeConfig):  # type: ignore[no-untyped-def]
    return make_config(
        models=[
            {
                "name": "claude",
                "model": "anthropic/claude-3-5-haiku-20241022",
                "api_key": "sk-ant-test",
                "max_retries": 1,
                "timeout_s": 5,
            }
        ]
    )


async def test_litellm_chat_translates_request_and_response(
    client: httpx.AsyncClient, anthropic: respx.MockRouter
) -> None:
    route = anthropic.post("/v1/messages").respond(json=anthropic_message("bonjour"))
    r = await client.post("/v1/chat/completions", headers=AUTH, json=chat("claude", "say hi", max_tokens=50))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["object"] == "chat.completion"
    assert body["choices"][0]["message"]["content"] == "bonjour"
    assert body["usage"]["prompt_tokens"] == 11 and body["usage"]["completion_tokens"] == 3
    sent = orjson.loads(route.calls.last.request.content)
    assert sent["model"] == "claude-3-5-haiku-20241022"
    assert sent["messages"] == [{"role": "user", "content": [{"type": "text", "text": "say hi"}]}]
    assert sent["max_tokens"] == 50
    assert route.calls.last.request.headers["x-api-key"] == "sk-ant-test"


async def test_litellm_stream_becomes_openai_chunks(client: httpx.AsyncClient, anthropic: respx.MockRouter) -> None:
    anthropic.post("/v1/messages").respond(
        content=anthropic_stream("hello from claude"), headers={"content-type": "text/event-stream"}
    )
    r = await client.post("/v1/chat/completions", headers=AUTH, json=chat("claude", "hi", stream=True))
    assert r.status_code == 200
    events = [line[6:] for line in r.text.split("\n\n") if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    chunks = [orjson.loads(e) for e in events[:-1]]
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert text.replace(" ", "") == "hellofromclaude"


async def test_litellm_upstream_429_keeps_its_meaning_after_retries(
    client: httpx.AsyncClient, anthropic: respx.MockRouter
) -> None:
    error = {"type": "error", "error": {"type": "rate_limit_error", "message": "slow down"}}
    route = anthropic.post("/v1/messages").respond(status_code=429, json=error)
    r = await client.post("/v1/chat/completions", headers=AUTH, json=chat("claude"))
    assert r.status_code == 429
    assert r.json()["error"]["code"] == "upstream_rate_limited"
    assert route.call_count == 2  # max_retries: 1


async def test_litellm_upstream_400_is_not_retried(client: httpx.AsyncClient, anthropic: respx.MockRouter) -> None:
    error = {"type": "error", "error": {"type": "invalid_request_error", "message": "max_tokens: too large"}}
    route = anthropic.post("/v1/messages").respond(status_code=400, json=error)
    r = await client.post("/v1/chat/completions", headers=AUTH, json=chat("claude"))
    assert r.status_code == 400
    assert "max_tokens: too large" in r.json()["error"]["message"]
    assert route.call_count == 1
