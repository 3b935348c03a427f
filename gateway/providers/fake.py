"""Deterministic in-process provider for demos, tests and evals; the upstream model name picks the behaviour.

- `fake/echo`            replies with the last user message (completions: the prompt); asked for
                         `response_format: {type: json_object}`, with {"echo": message} unless it is a JSON object
- `fake/tool_call:NAME`  replies with one call of tool NAME whose arguments are the last user message as
                         {"input": ...} (or the JSON object it contains), finish_reason "tool_calls"
- `fake/error:STATUS`    fails as an upstream answering STATUS would (429 and 5xx are retried)
- `fake/slow:MS`         echoes after MS milliseconds (streams: spread over the chunks)
Like every provider it honours the model's `timeout_s`: an answer later than that is a 504 `provider_timeout`
after timeout_s (streams: a gap between two events longer than timeout_s, as on the direct path).
Token counts are whitespace words, so tests can predict them.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import math
import struct
import time
from collections.abc import AsyncIterator

import orjson

from gateway.config import ModelConfig
from gateway.errors import InvalidRequest, UpstreamTimeout
from gateway.providers.base import DONE_EVENT, JSONObject, Operation, Reply, error_for_status


def words(text: str) -> int:
    return len(text.split())


def text_of(content: object) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return ""


class FakeProvider:
    """Answers from the request alone; no network, no randomness."""

    async def send(self, op: Operation, model: ModelConfig, body: JSONObject) -> Reply:
        behaviour, _, arg = model.upstream_model.partition(":")
        await self._misbehave(behaviour, arg, model)
        if op == "embeddings":
            data = embedding(model, body)
        elif op == "completions":
            data = text_completion(model, body)
        else:
            data = chat_completion(model, body, tool=arg if behaviour == "tool_call" else None)
        return Reply(orjson.dumps(data), data)

    async def stream(self, op: Operation, model: ModelConfig, body: JSONObject) -> AsyncIterator[bytes]:
        behaviour, _, arg = model.upstream_model.partition(":")
        if op == "embeddings":
            raise InvalidRequest("Embeddings cannot be streamed.", param="stream")
        await self._misbehave(behaviour, arg, model, stream=True)
        whole = (
            text_completion(model, body)
            if op == "completions"
            else chat_completion(model, body, tool=arg if behaviour == "tool_call" else None)
        )
        gap = int(arg) / 10_000 if behaviour == "slow" and arg.isdigit() else 0.0
        for chunk in stream_chunks(op, whole):
            if gap:
                await wait(gap, model, during="a stream")
            yield b"data: " + orjson.dumps(chunk) + b"\n\n"
        options = body.get("stream_options")
        if isinstance(options, dict) and options.get("include_usage"):
            usage_chunk = {**header_of(op, whole), "choices": [], "usage": whole["usage"]}
            yield b"data: " + orjson.dumps(usage_chunk) + b"\n\n"
        yield DONE_EVENT

    async def _misbehave(self, behaviour: str, arg: str, model: ModelConfig, *, stream: bool = False) -> None:
        if behaviour == "error":
            status = int(arg) if arg.isdigit() else 500
            raise error_for_status(status, "fake provider error", model)
        if behaviour == "slow" and not stream:
            await wait(int(arg) / 1000 if arg.isdigit() else 0.1, model)


async def wait(delay_s: float, model: ModelConfig, *, during: str | None = None) -> None:
    """Sleeps delay_s, or raises UpstreamTimeout after the model's timeout_s when that comes first."""
    if delay_s <= model.timeout_s:
        await asyncio.sleep(delay_s)
        return
    await asyncio.sleep(model.timeout_s)
    if during is None:
        raise UpstreamTimeout(f"Upstream for model {model.name!r} did not answer within {model.timeout_s} s.")
    raise UpstreamTimeout(f"Upstream for model {model.name!r} sent nothing for {model.timeout_s} s during {during}.")


def last_user_text(messages: object) -> str:
    if isinstance(messages, list):
        for message in reversed(messages):
            if isinstance(message, dict) and message.get("role") == "user":
                return text_of(message.get("content"))
    return ""


def usage(prompt: int, completion: int) -> JSONObject:
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def chat_completion(model: ModelConfig, body: JSONObject, *, tool: str | None) -> JSONObject:
    messages = body.get("messages") or []
    assert isinstance(messages, list)
    prompt_tokens = sum(words(text_of(m.get("content"))) + 3 for m in messages if isinstance(m, dict))
    text = last_user_text(messages)
    n = body.get("n") or 1
    assert isinstance(n, int)
    if tool:
        arguments = text if text.strip().startswith("{") else orjson.dumps({"input": text}).decode()
        message: JSONObject = {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": "call_fake_0", "type": "function", "function": {"name": tool, "arguments": arguments}}
            ],
        }
        finish, completion_tokens = "tool_calls", words(arguments)
    else:
        text = as_json_object(text) if json_object_requested(body) else text
        message, finish, completion_tokens = {"role": "assistant", "content": text}, "stop", words(text)
    choices = [{"index": i, "message": message, "logprobs": None, "finish_reason": finish} for i in range(n)]
    return {
        "id": f"chatcmpl-fake{int(time.time() * 1000)}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model.upstream_model,
        "choices": choices,
        "usage": usage(prompt_tokens, completion_tokens * n),
        "system_fingerprint": "fake",
    }


def json_object_requested(body: JSONObject) -> bool:
    response_format = body.get("response_format")
    return isinstance(response_format, dict) and response_format.get("type") == "json_object"


def as_json_object(text: str) -> str:
    """The echo as the JSON object a `response_format: json_object` request asks for: the text itself when it is
    one, else {"echo": text}."""
    try:
        if isinstance(orjson.loads(text), dict):
            return text
    except orjson.JSONDecodeError:
        pass
    return orjson.dumps({"echo": text}).decode()


def text_completion(model: ModelConfig, body: JSONObject) -> JSONObject:
    prompt = body.get("prompt", "")
    text = prompt if isinstance(prompt, str) else " ".join(str(p) for p in prompt) if isinstance(prompt, list) else ""
    return {
        "id": f"cmpl-fake{int(time.time() * 1000)}",
        "object": "text_completion",
        "created": int(time.time()),
        "model": model.upstream_model,
        "choices": [{"index": 0, "text": text, "logprobs": None, "finish_reason": "stop"}],
        "usage": usage(words(text), words(text)),
    }


def embedding(model: ModelConfig, body: JSONObject) -> JSONObject:
    raw = body.get("input")
    inputs = [raw] if isinstance(raw, str) or (isinstance(raw, list) and raw and isinstance(raw[0], int)) else raw
    assert isinstance(inputs, list)
    dims = body.get("dimensions") or 8
    assert isinstance(dims, int)
    as_base64 = body.get("encoding_format") == "base64"  # the openai SDK asks for base64 by default
    data = []
    for i, item in enumerate(inputs):
        values: object = vector(str(item), dims)
        if as_base64:
            values = base64.b64encode(struct.pack(f"<{dims}f", *values)).decode()  # type: ignore[misc]
        data.append({"object": "embedding", "index": i, "embedding": values})
    tokens = sum(words(str(item)) for item in inputs)
    return {
        "object": "list",
        "data": data,
        "model": model.upstream_model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }


def vector(text: str, dims: int) -> list[float]:
    """A unit vector derived from the text's hash: equal texts embed equally."""
    seed = hashlib.sha256(text.encode()).digest()
    values = [(seed[i % len(seed)] + i) % 256 / 255 - 0.5 for i in range(dims)]
    norm = math.sqrt(sum(v * v for v in values)) or 1.0
    return [v / norm for v in values]


def header_of(op: Operation, whole: JSONObject) -> JSONObject:
    kind = "chat.completion.chunk" if op == "chat" else "text_completion"
    return {"id": whole["id"], "object": kind, "created": whole["created"], "model": whole["model"]}


def stream_chunks(op: Operation, whole: JSONObject) -> list[JSONObject]:
    """The chunks a streaming upstream would send for this completion, one word piece per chunk."""
    head = header_of(op, whole)
    choices = whole["choices"]
    assert isinstance(choices, list)
    chunks: list[JSONObject] = []
    for choice in choices:
        index = choice["index"]
        if op == "completions":
            pieces = split_words(choice["text"])
            chunks += [{**head, "choices": [{"index": index, "text": p, "finish_reason": None}]} for p in pieces]
            chunks.append({**head, "choices": [{"index": index, "text": "", "finish_reason": "stop"}]})
            continue
        message = choice["message"]
        chunks.append({**head, "choices": [{"index": index, "delta": {"role": "assistant", "content": ""}}]})
        if message.get("tool_calls"):
            calls = [{"index": 0, **call} for call in message["tool_calls"]]
            chunks.append({**head, "choices": [{"index": index, "delta": {"tool_calls": calls}}]})
        for piece in split_words(message.get("content") or ""):
            chunks.append({**head, "choices": [{"index": index, "delta": {"content": piece}}]})
        final = {"index": index, "delta": {}, "finish_reason": choice["finish_reason"]}
        chunks.append({**head, "choices": [final]})
    return chunks


def split_words(text: str) -> list[str]:
    """Pieces whose concatenation is the text: each word keeps the space before it."""
    parts = text.split(" ")
    return [parts[0], *(" " + p for p in parts[1:])] if text else []
