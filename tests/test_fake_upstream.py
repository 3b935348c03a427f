"""The fake upstream itself, driven over real HTTP with httpx."""

from __future__ import annotations

import base64
import math
import threading
from array import array
from collections.abc import Iterator

import httpx
import orjson
import pytest

from tests.fake_upstream import FakeUpstream, Reply


@pytest.fixture(scope="module")
def server() -> Iterator[FakeUpstream]:
    with FakeUpstream() as up:
        yield up


@pytest.fixture
def up(server: FakeUpstream) -> Iterator[FakeUpstream]:
    server.reset()
    yield server
    server.reset()


@pytest.fixture
def http(up: FakeUpstream) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=up.base_url, timeout=2.0) as client:
        yield client


def chat(text: object = "hello there world", **extra: object) -> dict[str, object]:
    return {"model": "gpt-test", "messages": [{"role": "user", "content": text}], **extra}


def read_events(response: httpx.Response) -> list[object]:
    """The data payloads of an SSE body, JSON-decoded except [DONE]."""
    payloads = [line.removeprefix("data: ") for line in response.text.split("\n\n") if line]
    return [p if p == "[DONE]" else orjson.loads(p) for p in payloads]


def test_chat_echoes_last_user_message_with_usage(http: httpx.Client) -> None:
    body = {
        "model": "gpt-test",
        "messages": [
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": "first"},
            {
                "role": "user",
                "content": [{"type": "text", "text": "hello "}, {"type": "text", "text": "world"}],
            },
        ],
    }
    r = http.post("/chat/completions", json=body)
    assert r.status_code == 200
    data = r.json()
    assert data["id"].startswith("chatcmpl-") and data["object"] == "chat.completion"
    assert data["model"] == "gpt-test" and data["system_fingerprint"]
    assert data["choices"][0]["message"] == {"role": "assistant", "content": "hello world", "refusal": None}
    assert data["choices"][0]["finish_reason"] == "stop"
    # prompt: words (2 + 1 + 2) + 3 per message (3); completion: words of the reply
    assert data["usage"] == {"prompt_tokens": 14, "completion_tokens": 2, "total_tokens": 16}


def test_chat_n_returns_n_indexed_choices(http: httpx.Client) -> None:
    data = http.post("/chat/completions", json=chat("a b", n=3)).json()
    assert [c["index"] for c in data["choices"]] == [0, 1, 2]
    assert {c["message"]["content"] for c in data["choices"]} == {"a b"}
    assert data["usage"]["completion_tokens"] == 6


def test_chat_named_tool_choice_returns_tool_call(http: httpx.Client) -> None:
    tools = [{"type": "function", "function": {"name": n, "parameters": {}}} for n in ("a.b", "shell.exec")]
    forced = {"type": "function", "function": {"name": "shell.exec"}}
    choice = http.post("/chat/completions", json=chat(tools=tools, tool_choice=forced)).json()["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["content"] is None
    (call,) = choice["message"]["tool_calls"]
    assert call["function"] == {"name": "shell.exec", "arguments": "{}"}


def test_chat_logprobs_cover_each_piece(http: httpx.Client) -> None:
    data = http.post("/chat/completions", json=chat("a b", logprobs=True, top_logprobs=2)).json()
    content = data["choices"][0]["logprobs"]["content"]
    assert [e["token"] for e in content] == ["a", " b"]
    assert all(len(e["top_logprobs"]) == 2 and e["logprob"] < 0 for e in content)


def test_chat_stream_without_usage_sends_role_pieces_finish_done(http: httpx.Client) -> None:
    r = http.post("/chat/completions", json=chat("hello  big world", stream=True))
    assert r.headers["content-type"] == "text/event-stream"
    *chunks, done = read_events(r)
    assert done == "[DONE]"
    deltas = [c["choices"][0]["delta"] for c in chunks]
    assert deltas[0]["role"] == "assistant"
    assert [d["content"] for d in deltas[1:-1]] == ["hello", "  big", " world"]
    assert deltas[-1] == {} and chunks[-1]["choices"][0]["finish_reason"] == "stop"
    assert all(c["object"] == "chat.completion.chunk" and "usage" not in c for c in chunks)


def test_chat_stream_include_usage_ends_with_usage_chunk(http: httpx.Client) -> None:
    r = http.post("/chat/completions", json=chat("a b c", stream=True, stream_options={"include_usage": True}))
    *chunks, usage_chunk, done = read_events(r)
    assert done == "[DONE]"
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    assert usage_chunk["choices"] == []
    assert usage_chunk["usage"] == {"prompt_tokens": 6, "completion_tokens": 3, "total_tokens": 9}


def test_completions_echo_prompt_plain_and_streamed(http: httpx.Client) -> None:
    data = http.post("/completions", json={"model": "m", "prompt": "say this"}).json()
    assert data["object"] == "text_completion" and data["choices"][0]["text"] == "say this"
    assert data["usage"] == {"prompt_tokens": 2, "completion_tokens": 2, "total_tokens": 4}
    r = http.post("/completions", json={"model": "m", "prompt": "say this", "stream": True})
    *chunks, done = read_events(r)
    assert "".join(c["choices"][0]["text"] for c in chunks) == "say this"
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop" and done == "[DONE]"


def test_embeddings_honour_dimensions_and_are_deterministic_unit_vectors(http: httpx.Client) -> None:
    body = {"model": "e", "input": ["alpha", "beta", "alpha"], "dimensions": 5}
    data = http.post("/embeddings", json=body).json()
    vectors = [d["embedding"] for d in data["data"]]
    assert data["object"] == "list" and [d["index"] for d in data["data"]] == [0, 1, 2]
    assert all(len(v) == 5 and math.isclose(math.hypot(*v), 1.0) for v in vectors)
    assert vectors[0] == vectors[2] != vectors[1]
    assert data["usage"] == {"prompt_tokens": 3, "total_tokens": 3}
    tokens = http.post("/embeddings", json={"model": "e", "input": [1, 2, 3]}).json()
    assert len(tokens["data"]) == 1 and len(tokens["data"][0]["embedding"]) == 8


def test_embeddings_base64_decodes_to_the_float_vector(http: httpx.Client) -> None:
    plain = http.post("/embeddings", json={"model": "e", "input": "x"}).json()["data"][0]["embedding"]
    encoded = http.post("/embeddings", json={"model": "e", "input": "x", "encoding_format": "base64"}).json()
    decoded = array("f", base64.b64decode(encoded["data"][0]["embedding"])).tolist()
    assert decoded == pytest.approx(plain, rel=1e-6)


def test_models_lists_configured_models(http: httpx.Client) -> None:
    assert [m["id"] for m in http.get("/models").json()["data"]] == [
        "gpt-4o-mini",
        "gpt-4o",
        "text-embedding-3-small",
    ]
    assert http.get("/models/nope").status_code == 404


def test_fail_next_returns_openai_error_then_recovers(up: FakeUpstream, http: httpx.Client) -> None:
    up.fail_next(429, 2, message="slow down")
    assert [http.post("/chat/completions", json=chat()).status_code for _ in range(3)] == [429, 429, 200]
    up.fail_next(503)
    error = http.post("/chat/completions", json=chat()).json()["error"]
    assert error["type"] == "server_error" and set(error) == {"message", "type", "param", "code"}


def test_script_raw_garbage_is_sent_verbatim(up: FakeUpstream, http: httpx.Client) -> None:
    up.script(Reply(raw=b"not json", headers={"x-upstream": "1"}))
    r = http.post("/chat/completions", json=chat())
    assert (r.status_code, r.content, r.headers["x-upstream"]) == (200, b"not json", "1")


def test_script_path_filter_skips_other_paths(up: FakeUpstream, http: httpx.Client) -> None:
    up.script(Reply(status=500), path="/embeddings")
    assert http.post("/chat/completions", json=chat()).status_code == 200
    assert http.post("/embeddings", json={"model": "e", "input": "x"}).status_code == 500
    assert up.pending == 0


def test_script_stream_events_sent_as_given(up: FakeUpstream, http: httpx.Client) -> None:
    up.script(Reply(stream_events=[{"a": 1}, b"[DONE]"], event_delay_s=0.001))
    r = http.post("/chat/completions", json=chat(stream=True))
    assert r.text == 'data: {"a":1}\n\ndata: [DONE]\n\n'


def test_close_after_events_leaves_client_an_incomplete_stream(up: FakeUpstream, http: httpx.Client) -> None:
    up.script(Reply(close_after_events=2))
    seen: list[str] = []
    with pytest.raises(httpx.RemoteProtocolError, match="incomplete chunked read"):
        with http.stream("POST", "/chat/completions", json=chat(stream=True)) as r:
            seen.extend(line for line in r.iter_lines() if line)
    assert len(seen) == 2
    assert up.disconnects == 0  # the server hung up, not the client


def test_client_timeout_during_delay_counts_one_disconnect(up: FakeUpstream, http: httpx.Client) -> None:
    up.script(Reply(delay_s=5))
    with pytest.raises(httpx.ReadTimeout):
        http.post("/chat/completions", json=chat(), timeout=0.05)
    assert up.wait_for_disconnects(1) == 1


def test_hold_reports_arrival_and_answers_on_release(up: FakeUpstream, http: httpx.Client) -> None:
    hold = up.hold()
    result: list[httpx.Response] = []
    caller = threading.Thread(target=lambda: result.append(http.post("/chat/completions", json=chat("hi"))))
    caller.start()
    assert hold.arrived.wait(1)
    hold.release(Reply(json={"held": True}))
    caller.join(1)
    assert result[0].json() == {"held": True}
    assert not hold.cancelled.is_set()


def test_requests_recorded_with_lowercase_headers_and_body(up: FakeUpstream, http: httpx.Client) -> None:
    http.post("/chat/completions", json=chat("one"), headers={"Authorization": "Bearer sk-up"})
    http.post("/embeddings", content=b"{broken")
    first, second = up.requests
    assert (first.method, first.path) == ("POST", "/v1/chat/completions")
    assert first.headers["authorization"] == "Bearer sk-up"
    assert first.body == chat("one")
    assert (second.body, second.raw) == (None, b"{broken")
    assert up.last == second
    up.reset()
    assert up.requests == []


def test_stop_then_start_serves_again() -> None:
    up = FakeUpstream()
    with up:
        first = up.port
    with up, httpx.Client() as client:
        assert client.get(f"{up.base_url}/models").status_code == 200
    assert first > 0
    with pytest.raises(RuntimeError):
        _ = up.base_url
