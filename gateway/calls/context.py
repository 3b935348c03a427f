"""CallContext: one model call's request, caller, route, timings and outcome, shared by every hook."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from gateway.providers.base import JSONObject, Operation

if TYPE_CHECKING:
    from gateway.calls.caller import Principal
    from gateway.config import ModelConfig
    from gateway.errors import GatewayError
    from gateway.providers.base import Deployment, Reply

__all__ = ["CallContext", "JSONObject", "Operation", "StreamFilter", "Usage"]


@dataclass(frozen=True, slots=True)
class Usage:
    """Tokens of one call as the provider reported them."""

    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int = 0  # part of prompt_tokens read from the provider's prompt cache
    reasoning_tokens: int = 0  # part of completion_tokens
    cache_creation_tokens: int = 0  # part of prompt_tokens written to the prompt cache (Anthropic)


class StreamFilter(Protocol):
    """Per-call state of a stage that rewrites a stream's events (output guardrails, tool calls)."""

    async def on_event(self, ctx: CallContext, event: bytes) -> bytes: ...


@dataclass(slots=True)
class CallContext:
    request_id: str
    operation: Operation
    raw: bytes  # the request body as received; the parse stage fills body, model and stream
    authorization: str | None
    started: float = field(default_factory=time.perf_counter)
    body: JSONObject = field(default_factory=dict)
    model: str = ""
    stream: bool = False
    principal: Principal | None = None
    route: tuple[Deployment, ...] = ()
    deployment: ModelConfig | None = None  # the deployment that answered (after fallbacks)
    upstream_s: float = 0.0  # wall time spent waiting on upstreams, backoff included
    attempts: int = 0
    status_code: int = 200
    error: GatewayError | None = None
    prompt_tokens: int | None = None  # counted before the call, when a limit needs it
    usage: Usage | None = None  # what the upstream reported (or the gateway counted) after the call
    cost_nanos: int = 0
    response_headers: dict[str, str] | None = None  # e.g. x-ratelimit-*, added to the HTTP response; lower-case names
    completed: bool = False  # the after_response stages ran
    reserved: bool = False  # a budget reservation is held for this call
    client_wants_usage: bool = False  # the client itself asked for the usage chunk of a stream
    stream_events: list[bytes] | None = None  # kept to count output tokens if the upstream reports none
    stream_guard: StreamFilter | None = None  # output guardrails' window over a stream
    tool_stream: StreamFilter | None = None  # tool calls of a stream, held until complete and judged
    answer: Reply | None = None  # a stage answered the call itself (a released approval): no upstream call
    answer_events: list[bytes] | None = None  # the same answer as SSE events, for streams
    decisions: list[dict[str, object]] | None = None  # guardrail and policy decisions, for the records
    policy_sha256: str | None = None  # the policy set that made them
    prompt_id: str | None = None  # the registry prompt rendered into this call, and its version
    prompt_version: int | None = None
    eval_run_id: str | None = None  # the eval run that made this call (header x-gateway-eval-run), for its record

    def overhead_ms(self) -> float:
        """Time spent in the gateway so far, excluding the time spent waiting on upstreams."""
        return (time.perf_counter() - self.started - self.upstream_s) * 1000.0
