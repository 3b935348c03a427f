"""What a target answered, read into an `Observed`: a chat completion's JSON, or a stream's SSE events joined into one.

Both clients (in process and over HTTP) read answers here, so an assertion sees the same fields whichever transport
carried the call. A stream is joined as a client would: the first choice's content deltas concatenated, its tool-call
deltas merged by index (name once, argument fragments appended), its last finish_reason, and the usage chunk if any.
"""

from __future__ import annotations

from typing import Any

import orjson

from gateway.evals.observed import Observed, ToolCall

OUTPUT_LIMIT = 2000  # characters of output kept in a result's attempt


def fill_from_body(observed: Observed, body: dict[str, Any]) -> None:
    """Text, tool calls, finish reason, tokens and model of a (non-streamed or joined) chat or text completion."""
    observed.body = body
    choices = body.get("choices")
    if isinstance(choices, list) and choices and isinstance(choices[0], dict):
        choice = choices[0]
        message = choice.get("message")
        if isinstance(message, dict):
            observed.text = content_text(message.get("content"))
            observed.tool_calls = tool_calls_of(message.get("tool_calls"))
        elif isinstance(choice.get("text"), str):  # /v1/completions
            observed.text = choice["text"]
        observed.finish_reason = choice.get("finish_reason")
    usage = body.get("usage")
    if isinstance(usage, dict):
        observed.prompt_tokens = int(usage.get("prompt_tokens") or 0)
        observed.completion_tokens = int(usage.get("completion_tokens") or 0)
    if not observed.model and isinstance(body.get("model"), str):
        observed.model = body["model"]


def content_text(content: object) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # content parts
        return "".join(str(part.get("text", "")) for part in content if isinstance(part, dict))
    return ""


def tool_calls_of(raw: object) -> list[ToolCall]:
    if not isinstance(raw, list):
        return []
    calls = []
    for call in raw:
        function = call.get("function") if isinstance(call, dict) else None
        if not isinstance(function, dict):
            continue
        calls.append(ToolCall(str(function.get("name", "")), parse_arguments(function.get("arguments")),
                              str(call.get("id", ""))))  # fmt: skip
    return calls


def parse_arguments(arguments: object) -> Any:
    """Tool-call arguments as JSON when they parse, else the raw string (an assertion reports it)."""
    if not isinstance(arguments, str):
        return arguments
    try:
        return orjson.loads(arguments)
    except orjson.JSONDecodeError:
        return arguments


def event_payloads(events: list[bytes]) -> list[bytes]:
    """The `data:` payloads of SSE events (several may share one chunk of bytes), without [DONE]."""
    payloads = []
    for event in events:
        for line in event.split(b"\n"):
            if line.startswith(b"data:"):
                data = line[5:].strip()
                if data and data != b"[DONE]":
                    payloads.append(data)
    return payloads


def join_stream(events: list[bytes]) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """A stream's events as the chat completion they add up to, and the error its last event carried (or None)."""
    text: list[str] = []
    calls: dict[int, dict[str, Any]] = {}
    head: dict[str, Any] = {}
    finish: str | None = None
    usage: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    completion = False
    for payload in event_payloads(events):
        try:
            chunk = orjson.loads(payload)
        except orjson.JSONDecodeError:
            continue
        if not isinstance(chunk, dict):
            continue
        if isinstance(chunk.get("error"), dict):
            error = chunk["error"]
            continue
        if not head:
            head = {k: chunk[k] for k in ("id", "created", "model") if k in chunk}
        if isinstance(chunk.get("usage"), dict):
            usage = chunk["usage"]
        for choice in chunk.get("choices") or ():
            if not isinstance(choice, dict) or choice.get("index", 0) != 0:
                continue
            if choice.get("finish_reason"):
                finish = choice["finish_reason"]
            if isinstance(choice.get("text"), str):
                completion = True
                text.append(choice["text"])
            delta = choice.get("delta")
            if isinstance(delta, dict):
                if isinstance(delta.get("content"), str):
                    text.append(delta["content"])
                merge_tool_deltas(calls, delta.get("tool_calls"))
    joined = "".join(text)
    if completion:
        choice: dict[str, Any] = {"index": 0, "text": joined, "finish_reason": finish}
    else:
        message: dict[str, Any] = {"role": "assistant", "content": joined or None}
        if calls:
            message["tool_calls"] = [calls[i] for i in sorted(calls)]
        choice = {"index": 0, "message": message, "finish_reason": finish}
    body = {**head, "object": "text_completion" if completion else "chat.completion", "choices": [choice]}
    if usage is not None:
        body["usage"] = usage
    return body, error


def merge_tool_deltas(calls: dict[int, dict[str, Any]], deltas: object) -> None:
    if not isinstance(deltas, list):
        return
    for delta in deltas:
        if not isinstance(delta, dict):
            continue
        call = calls.setdefault(int(delta.get("index", 0)),
                                {"id": "", "type": "function", "function": {"name": "", "arguments": ""}})  # fmt: skip
        if delta.get("id"):
            call["id"] = delta["id"]
        function = delta.get("function")
        if isinstance(function, dict):
            if function.get("name"):
                call["function"]["name"] = function["name"]
            if isinstance(function.get("arguments"), str):
                call["function"]["arguments"] += function["arguments"]


def error_of(body: object) -> dict[str, Any]:
    """The OpenAI-shaped error object of an error answer ({"message", "type", "code", "param"})."""
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        return body["error"]  # type: ignore[no-any-return]
    return {"message": str(body)[:500], "type": "server_error", "code": None, "param": None}
