"""What an OpenAI-compatible upstream answers: chat completions, completions and embeddings (JSON and SSE) as pure
functions of the request body, for FakeUpstream (tests/fake_upstream.py) to serve."""

from __future__ import annotations

import base64
import hashlib
import math
import re
import time
from array import array
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

JSONObject = dict[str, Any]

FINGERPRINT = "fp_fake_upstream"
DONE = b"data: [DONE]\n\n"
_PIECE = re.compile(r"\s*\S+|\s+")
_ERROR_KINDS = {
    400: ("invalid_request_error", "invalid_value"),
    401: ("invalid_request_error", "invalid_api_key"),
    403: ("permission_error", "permission_denied"),
    404: ("invalid_request_error", "model_not_found"),
    429: ("rate_limit_error", "rate_limit_exceeded"),
}


class BadRequest(Exception):
    """A body the fake refuses, as OpenAI would: FakeUpstream answers it with 400 and this message."""


def load_object(raw: bytes) -> JSONObject | None:
    try:
        value = orjson.loads(raw) if raw else None
    except orjson.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None


def encode_event(event: bytes | Mapping[str, object]) -> bytes:
    return b"data: " + (event if isinstance(event, bytes) else orjson.dumps(event)) + b"\n\n"


def build_error(status: int, message: str | None = None, *, code: str | None = None) -> JSONObject:
    kind, default_code = _ERROR_KINDS.get(status, ("server_error" if status >= 500 else "invalid_request_error", None))
    text = message or f"Fake upstream error {status}."
    return {"error": {"message": text, "type": kind, "param": None, "code": code or default_code}}


def get_text(content: object) -> str:
    """A message's content as text: a string as-is, a list of parts as its text parts concatenated."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text")
    return ""


def count_words(text: str) -> int:
    return len(text.split())


def split_pieces(text: str) -> list[str]:
    """Word pieces that keep their leading spaces, so "".join(split_pieces(t)) == t."""
    return _PIECE.findall(text)


def _usage(prompt: int, completion: int) -> JSONObject:
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def _require_model(body: JSONObject) -> str:
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise BadRequest("You must provide a model parameter.")
    return model


def _get_n(body: JSONObject) -> int:
    n = body.get("n") or 1
    if not isinstance(n, int) or not 1 <= n <= 128:
        raise BadRequest("n must be an integer from 1 to 128.")
    return n


@dataclass(frozen=True, slots=True)
class _ChatPlan:
    """What a chat call answers, shared by the JSON and the streamed form."""

    model: str
    n: int
    text: str
    tool: str | None
    prompt_tokens: int
    top_logprobs: int | None

    @classmethod
    def of(cls, body: JSONObject) -> _ChatPlan:
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise BadRequest("messages must be a non-empty list.")
        users = [m for m in messages if isinstance(m, dict) and m.get("role") == "user"]
        text = get_text(users[-1].get("content")) if users else ""
        prompt = sum(count_words(get_text(m.get("content"))) + 3 for m in messages if isinstance(m, dict))
        logprobs = (body.get("top_logprobs") or 0) if body.get("logprobs") else None
        return cls(_require_model(body), _get_n(body), text, _get_tool(body), prompt, logprobs)

    @property
    def completion_tokens(self) -> int:
        return self.n * (2 if self.tool is not None else count_words(self.text))

    @property
    def finish_reason(self) -> str:
        return "tool_calls" if self.tool is not None else "stop"


def _get_tool(body: JSONObject) -> str | None:
    """The function a tool_choice forces: the named one, or the first tool when "required"."""
    tools, choice = body.get("tools"), body.get("tool_choice")
    if not tools or not isinstance(tools, list):
        return None
    if isinstance(choice, dict):
        return str(choice.get("function", {}).get("name", ""))
    if choice == "required":
        return str(tools[0].get("function", {}).get("name", ""))
    return None


def _logprobs(pieces: list[str], top: int) -> JSONObject:
    def entry(token: str, logprob: float) -> JSONObject:
        return {"token": token, "logprob": logprob, "bytes": list(token.encode())}

    content = []
    for k, piece in enumerate(pieces):
        best = -0.01 * (k % 7 + 1)
        alternatives = [entry(piece, best)] + [entry(f"{piece}_{j}", best - j) for j in range(1, top)]
        content.append({**entry(piece, best), "top_logprobs": alternatives[:top]})
    return {"content": content, "refusal": None}


def build_chat_completion(body: JSONObject, ident: int) -> JSONObject:
    plan = _ChatPlan.of(body)
    if plan.tool is not None:
        call = {
            "id": f"call_{ident:024x}",
            "type": "function",
            "function": {"name": plan.tool, "arguments": "{}"},
        }
        message: JSONObject = {"role": "assistant", "content": None, "tool_calls": [call], "refusal": None}
    else:
        message = {"role": "assistant", "content": plan.text, "refusal": None}
    logprobs = None if plan.top_logprobs is None else _logprobs(split_pieces(plan.text), plan.top_logprobs)
    choice = {"message": message, "logprobs": logprobs, "finish_reason": plan.finish_reason}
    return {
        "id": f"chatcmpl-{ident:024x}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": plan.model,
        "choices": [{"index": i, **choice} for i in range(plan.n)],
        "usage": _usage(plan.prompt_tokens, plan.completion_tokens),
        "system_fingerprint": FINGERPRINT,
    }


def build_chat_chunks(body: JSONObject, ident: int) -> list[bytes]:
    """Role chunk, one chunk per word piece (or the tool call), finish chunk, optional usage, [DONE]."""
    plan = _ChatPlan.of(body)
    include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
    base: JSONObject = {
        "id": f"chatcmpl-{ident:024x}",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": plan.model,
        "system_fingerprint": FINGERPRINT,
    }
    if include_usage:
        base["usage"] = None

    def chunk(index: int, delta: JSONObject, finish: str | None = None, logprobs: object = None) -> bytes:
        choice = {"index": index, "delta": delta, "logprobs": logprobs, "finish_reason": finish}
        return encode_event({**base, "choices": [choice]})

    role = {"role": "assistant", "content": None if plan.tool is not None else "", "refusal": None}
    events = [chunk(i, role) for i in range(plan.n)]
    if plan.tool is not None:
        start = {"index": 0, "id": f"call_{ident:024x}", "type": "function"}
        opening = {"tool_calls": [{**start, "function": {"name": plan.tool, "arguments": ""}}]}
        arguments = {"tool_calls": [{"index": 0, "function": {"arguments": "{}"}}]}
        events += [chunk(i, delta) for i in range(plan.n) for delta in (opening, arguments)]
    else:
        for piece in split_pieces(plan.text):
            logprobs = None if plan.top_logprobs is None else _logprobs([piece], plan.top_logprobs)
            events += [chunk(i, {"content": piece}, logprobs=logprobs) for i in range(plan.n)]
    events += [chunk(i, {}, plan.finish_reason) for i in range(plan.n)]
    if include_usage:
        usage = _usage(plan.prompt_tokens, plan.completion_tokens)
        events.append(encode_event({**base, "choices": [], "usage": usage}))
    events.append(DONE)
    return events


def get_prompts(value: object) -> list[str]:
    """A completions prompt or an embeddings input as strings; token arrays become their numbers."""
    if isinstance(value, str):
        return [value]
    if not isinstance(value, list) or not value:
        raise BadRequest("The prompt or input must be a string or a non-empty list.")
    if all(isinstance(v, int) for v in value):
        return [" ".join(map(str, value))]
    if all(isinstance(v, str) for v in value):
        return list(value)
    if all(isinstance(v, list) for v in value):
        return [" ".join(map(str, v)) for v in value]
    raise BadRequest("The prompt or input mixes strings, tokens and token lists.")


def build_completion(body: JSONObject, ident: int) -> JSONObject:
    model, n, prompts = _require_model(body), _get_n(body), get_prompts(body.get("prompt"))
    choices = [
        {"text": prompt, "index": j * n + i, "logprobs": None, "finish_reason": "stop"}
        for j, prompt in enumerate(prompts)
        for i in range(n)
    ]
    words = sum(count_words(p) for p in prompts)
    return {
        "id": f"cmpl-{ident:024x}",
        "object": "text_completion",
        "created": int(time.time()),
        "model": model,
        "choices": choices,
        "usage": _usage(words, words * n),
        "system_fingerprint": FINGERPRINT,
    }


def build_completion_chunks(body: JSONObject, ident: int) -> list[bytes]:
    model, n, prompts = _require_model(body), _get_n(body), get_prompts(body.get("prompt"))
    base = {
        "id": f"cmpl-{ident:024x}",
        "object": "text_completion",
        "created": int(time.time()),
        "model": model,
    }

    def chunk(index: int, text: str, finish: str | None = None) -> bytes:
        choice = {"text": text, "index": index, "logprobs": None, "finish_reason": finish}
        return encode_event({**base, "choices": [choice]})

    indexed = [(j * n + i, prompt) for j, prompt in enumerate(prompts) for i in range(n)]
    events = [chunk(index, piece) for index, prompt in indexed for piece in split_pieces(prompt)]
    events += [chunk(index, "", "stop") for index, _ in indexed]
    if (body.get("stream_options") or {}).get("include_usage"):
        words = sum(count_words(p) for p in prompts)
        events.append(encode_event({**base, "choices": [], "usage": _usage(words, words * n)}))
    events.append(DONE)
    return events


def get_vector(text: str, dimensions: int) -> list[float]:
    """A unit vector derived from a hash of the text: equal texts, equal vectors."""
    digest = hashlib.shake_128(text.encode()).digest(2 * dimensions)
    raw = [x / 32767.5 - 1.0 for x in array("H", digest)]
    norm = math.hypot(*raw) or 1.0
    return [x / norm for x in raw]


def build_embeddings(body: JSONObject, ident: int) -> JSONObject:
    model, texts = _require_model(body), get_prompts(body.get("input"))
    dimensions = body.get("dimensions") or 8
    if not isinstance(dimensions, int) or not 1 <= dimensions <= 4096:
        raise BadRequest("dimensions must be an integer from 1 to 4096.")
    as_base64 = body.get("encoding_format") == "base64"  # the openai SDK asks for base64 by default
    data = []
    for index, text in enumerate(texts):
        vector: object = get_vector(text, dimensions)
        if as_base64:
            vector = base64.b64encode(array("f", vector).tobytes()).decode()
        data.append({"object": "embedding", "index": index, "embedding": vector})
    words = sum(count_words(t) for t in texts)
    return {
        "object": "list",
        "data": data,
        "model": model,
        "usage": {"prompt_tokens": words, "total_tokens": words},
    }


_Build = Callable[[JSONObject, int], JSONObject]
_BuildStream = Callable[[JSONObject, int], list[bytes]]
POST_ROUTES: dict[str, tuple[_Build, _BuildStream | None]] = {
    "/v1/chat/completions": (build_chat_completion, build_chat_chunks),
    "/v1/completions": (build_completion, build_completion_chunks),
    "/v1/embeddings": (build_embeddings, None),
}
