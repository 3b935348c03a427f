"""The rate-limit stage: RPM and TPM per key and team over a sliding minute, with OpenAI's headers."""

from __future__ import annotations

import math
from datetime import UTC, datetime

from gateway.calls.context import CallContext
from gateway.errors import GatewayError, RateLimited
from gateway.limits.counters import Counters, RateDecision
from gateway.pipeline.hooks import BaseHook
from gateway.providers.base import Reply


def rate_headers(decision: RateDecision) -> dict[str, str]:
    """OpenAI's x-ratelimit-* headers for the tightest scope."""
    headers: dict[str, str] = {}
    if decision.limit_requests is not None:
        headers["x-ratelimit-limit-requests"] = str(decision.limit_requests)
        headers["x-ratelimit-remaining-requests"] = str(decision.remaining_requests)
        headers["x-ratelimit-reset-requests"] = f"{decision.reset_requests_s or 0:.3f}s"
    if decision.limit_tokens is not None:
        headers["x-ratelimit-limit-tokens"] = str(decision.limit_tokens)
        headers["x-ratelimit-remaining-tokens"] = str(decision.remaining_tokens)
        headers["x-ratelimit-reset-tokens"] = f"{decision.reset_tokens_s or 0:.3f}s"
    return headers


class RateLimitHook(BaseHook):
    name = "rate_limit"

    def __init__(self, counters: Counters) -> None:
        self.counters = counters

    async def before_request(self, ctx: CallContext) -> None:
        key = ctx.principal.key if ctx.principal else None
        if key is None or not key.rates:
            return
        requested = ctx.body.get("max_completion_tokens") or ctx.body.get("max_tokens")
        tokens = (ctx.prompt_tokens or 0) + (requested if isinstance(requested, int) else 0)
        decision = await self.counters.check_rate(ctx.request_id, key.rates, tokens, now=datetime.now(UTC))
        headers = rate_headers(decision)
        if not decision.allowed:
            retry = math.ceil(decision.retry_after_s or 1)
            headers["retry-after"] = str(retry)
            scope = decision.scope.name if decision.scope else "this key"
            kind, _, ident = scope.partition(":")
            raise RateLimited(
                f"Rate limit reached for {kind} {ident}: {describe(decision)}. Retry after {retry} s.",
                headers=headers,
            )
        ctx.response_headers = headers

    async def after_response(self, ctx: CallContext, reply: Reply | None) -> None:
        await self._settle(ctx)

    async def on_error(self, ctx: CallContext, error: GatewayError) -> None:
        if ctx.response_headers is not None:  # this stage admitted the call
            await self._settle(ctx)

    async def _settle(self, ctx: CallContext) -> None:
        key = ctx.principal.key if ctx.principal else None
        if key is None or not key.counts_tokens:
            return
        used = ctx.usage.prompt_tokens + ctx.usage.completion_tokens if ctx.usage else 0
        await self.counters.adjust_tokens(ctx.request_id, key.rates, used, now=datetime.now(UTC))


def describe(decision: RateDecision) -> str:
    if decision.remaining_requests == 0 and decision.limit_requests is not None:
        return f"{decision.limit_requests} requests per minute"
    return f"{decision.limit_tokens} tokens per minute"
