"""Direct path for OpenAI-compatible upstreams (OpenAI, vLLM, Ollama, Groq, ...): bodies forwarded nearly verbatim.

The client is our connection pool (connections.py), chosen by measurement: on this 2-core machine a sequential
call cost 0.040 ms of client CPU against aiohttp's 0.139 ms (httpx 1.46 ms, the openai SDK 2.0 ms and
litellm.acompletion 3.8 ms at 50 concurrent calls, DESIGN.md). The request body is re-serialised with orjson
only to swap in the upstream model name; the response body is returned to the client as the bytes the upstream
sent, and streams are relayed event by event as they arrive.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import orjson

from gateway.config import ModelConfig
from gateway.errors import GatewayError, UpstreamError, UpstreamTimeout
from gateway.providers.base import (
    DONE_EVENT,
    JSONObject,
    Operation,
    Reply,
    error_for_status,
    parse_reply,
    upstream_message,
)
from gateway.providers.connections import ConnectionPool, UpstreamConnectionError, UpstreamProtocolError
from gateway.providers.endpoints import Endpoint, make_endpoint

PATHS: dict[Operation, str] = {
    "chat": "/chat/completions",
    "completions": "/completions",
    "embeddings": "/embeddings",
}


class OpenAICompatProvider:
    """Reaches any upstream speaking OpenAI's HTTP API over one pool of keep-alive connections."""

    def __init__(self, pool: ConnectionPool) -> None:
        self._pool = pool
        self._endpoints: dict[tuple[str, Operation], Endpoint] = {}

    def _endpoint(self, op: Operation, model: ModelConfig) -> Endpoint:
        endpoint = self._endpoints.get((model.name, op))
        if endpoint is None:
            headers = {"content-type": "application/json", **model.headers}
            if model.api_key is not None:
                headers["authorization"] = f"Bearer {model.api_key.get_secret_value()}"
            endpoint = self._endpoints[model.name, op] = make_endpoint(model.base_url + PATHS[op], headers)
        return endpoint

    async def send(self, op: Operation, model: ModelConfig, body: JSONObject) -> Reply:
        try:
            status, headers, raw = await self._pool.fetch(
                self._endpoint(op, model), payload(model, body), timeout_s=model.timeout_s
            )
        except TimeoutError:
            raise UpstreamTimeout(
                f"Upstream for model {model.name!r} did not answer within {model.timeout_s} s."
            ) from None
        except UpstreamConnectionError as exc:
            raise connection_error(model, exc) from exc
        if status >= 300:
            raise status_error(status, headers, raw, model)
        return parse_reply(raw, model)

    async def stream(self, op: Operation, model: ModelConfig, body: JSONObject) -> AsyncIterator[bytes]:
        opened = False
        try:
            response = await self._pool.open_stream(
                self._endpoint(op, model), payload(model, body), timeout_s=model.timeout_s
            )
            opened = True
            async with response:
                if response.status >= 300:
                    raise status_error(response.status, response.headers, await response.read(), model)
                content_type = response.headers.get("content-type", "").lower()
                if not content_type.startswith("text/event-stream"):
                    raise UpstreamError(
                        f"Upstream for model {model.name!r} answered a stream request with "
                        f"{content_type or 'no content type'}, not an event stream.",
                        retryable=False,
                    )
                async for event in split_events(response.chunks()):
                    yield event
                    if event == DONE_EVENT:
                        return
                raise UpstreamError(
                    f"Upstream for model {model.name!r} closed the stream before it finished.",
                    retryable=False,
                )
        except GatewayError:
            raise
        except TimeoutError:
            raise UpstreamTimeout(
                f"Upstream for model {model.name!r} sent nothing for {model.timeout_s} s during a stream."
            ) from None
        except UpstreamConnectionError as exc:
            if not opened:
                raise connection_error(model, exc) from exc
            raise UpstreamError(
                f"Upstream for model {model.name!r} broke off the stream: {exc}", retryable=False
            ) from exc


def payload(model: ModelConfig, body: JSONObject) -> bytes:
    """The client's body with the upstream's model name."""
    body = dict(body)
    body["model"] = model.upstream_model
    return orjson.dumps(body)


async def split_events(chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """Re-cut an SSE byte stream into complete events, each ending in a blank line."""
    buffer = b""
    async for data in chunks:
        if b"\r" in data:
            data = data.replace(b"\r\n", b"\n")
        buffer += data
        while True:
            end = buffer.find(b"\n\n")
            if end < 0:
                break
            event, buffer = buffer[: end + 2], buffer[end + 2 :]
            if event.strip():
                yield canonical_event(event)
    if buffer.strip() == DONE_EVENT.strip():  # some servers end with a single newline, then close
        yield DONE_EVENT


def canonical_event(event: bytes) -> bytes:
    """One SSE event as `data: <payload>\n\n`, the only form the stages after this parse.

    SSE allows `data:` without the space, several data lines, and `event:`/`id:`/`retry:` lines; an event in
    such a form would otherwise reach the client unread by the guardrails and tool rules. Events without data
    (comments, keep-alives) pass unchanged: they carry nothing to check."""
    if event.startswith(b"data: ") and event.find(b"\n") == len(event) - 2:
        return event  # the common form, one data line: nothing to do
    lines = [line[5:].removeprefix(b" ") for line in event.split(b"\n") if line.startswith(b"data:")]
    # Several data lines make one payload joined by newlines; in JSON a newline between tokens is whitespace,
    # so a space keeps the payload on the one line the stages read.
    return b"data: " + b" ".join(lines) + b"\n\n" if lines else event


def status_error(status: int, headers: dict[str, str], raw: bytes, model: ModelConfig) -> GatewayError:
    if status < 400:  # aiohttp followed redirects; a model API that redirects POSTs is misconfigured here
        where = headers.get("location", "(no location)")
        return UpstreamError(
            f"Upstream for model {model.name!r} answered {status}, a redirect to {where}: set api_base to the "
            "URL it redirects to.",
            retryable=False,
        )
    return error_for_status(status, upstream_message(raw), model, retry_after=headers.get("retry-after"))


def connection_error(model: ModelConfig, exc: UpstreamConnectionError) -> UpstreamError:
    """Not reached (refused, DNS, TLS): retryable. Reached and the exchange broke: retryable, the next attempt
    may land on a healthy connection. Reached and answered unusable HTTP: not retryable, it would repeat."""
    if not exc.reached:
        return UpstreamError(f"Could not reach the upstream for model {model.name!r} at {model.base_url}: {exc}")
    return UpstreamError(
        f"The upstream for model {model.name!r} at {model.base_url} failed mid-call: {exc}",
        retryable=not isinstance(exc, UpstreamProtocolError),
    )
