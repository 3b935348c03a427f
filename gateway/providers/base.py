"""Provider protocol, replies, and the mapping of upstream failures onto the gateway's errors."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, Protocol

import orjson

from gateway.errors import (
    GatewayError,
    UpstreamError,
    UpstreamInvalidRequest,
    UpstreamNotFound,
    UpstreamRateLimited,
)

if TYPE_CHECKING:
    from gateway.config import ModelConfig

Operation = Literal["chat", "completions", "embeddings"]
JSONObject = dict[str, object]
DONE_EVENT = b"data: [DONE]\n\n"


@dataclass(slots=True)
class Reply:
    """A non-streamed upstream answer: the JSON bytes returned to the client, and their parsed form."""

    body: bytes
    data: JSONObject


class Provider(Protocol):
    """One way of reaching upstreams. Both methods raise GatewayError subclasses only."""

    async def send(self, op: Operation, model: ModelConfig, body: JSONObject) -> Reply:
        """One non-streamed call. Raises UpstreamError, UpstreamTimeout, UpstreamRateLimited, ..."""
        ...

    def stream(self, op: Operation, model: ModelConfig, body: JSONObject) -> AsyncIterator[bytes]:
        """An async generator of complete SSE events (`data: ...\\n\\n`), ending with the [DONE] event.
        Errors raised before the first event may be retried; later ones end the stream."""
        ...


@dataclass(slots=True, frozen=True)
class Deployment:
    """A configured model together with the provider that reaches it."""

    config: ModelConfig
    provider: Provider


def parse_reply(raw: bytes, model: ModelConfig) -> Reply:
    """Validate that an upstream answered a JSON object; anything else is a 502."""
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        data = None
    if not isinstance(data, dict):
        raise UpstreamError(
            f"Upstream for model {model.name!r} returned a response that is not a JSON object.",
            retryable=False,
        )
    return Reply(raw, data)


def upstream_message(raw: bytes) -> str:
    """The error message an upstream gave, from an OpenAI-shaped body if it is one."""
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return raw[:300].decode("utf-8", "replace").strip() or "(empty body)"
    if isinstance(data, dict):
        error = data.get("error")
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            return error["message"]
        if isinstance(error, str):
            return error
        if isinstance(data.get("message"), str):
            return data["message"]
    return raw[:300].decode("utf-8", "replace")


def error_for_status(status: int, message: str, model: ModelConfig, *, retry_after: str | None = None) -> GatewayError:
    """Map an upstream HTTP status onto our error classes, keeping 400/404/429 meaning."""
    prefix = f"Upstream for model {model.name!r} answered {status}: {message}"
    if status in (400, 413, 422):
        return UpstreamInvalidRequest(prefix)
    if status == 404:
        return UpstreamNotFound(prefix)
    if status == 429:
        headers = {"retry-after": retry_after} if retry_after else None
        return UpstreamRateLimited(prefix, headers=headers)
    if status in (401, 403):
        # The client's key was fine; the gateway's credentials for this upstream are not.
        return UpstreamError(
            f"Upstream for model {model.name!r} rejected the gateway's credentials ({status}): {message}",
            retryable=False,
        )
    if status == 408 or status >= 500:
        return UpstreamError(prefix)
    return UpstreamError(prefix, retryable=False)
