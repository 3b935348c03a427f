"""CallContext: one model call's request, caller, route, timings and outcome, shared by every hook."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from gateway.config import ModelConfig
    from gateway.errors import GatewayError
    from gateway.providers.base import Deployment

Operation = Literal["chat", "completions", "embeddings"]
JSONObject = dict[str, object]


@dataclass(slots=True, frozen=True)
class Principal:
    """Who is calling: the master key (admin) or, later, a virtual key with its team and role."""

    key_id: str | None
    name: str
    role: str
    team_id: str | None = None


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

    def overhead_ms(self) -> float:
        """Time spent in the gateway so far, excluding the time spent waiting on upstreams."""
        return (time.perf_counter() - self.started - self.upstream_s) * 1000.0
