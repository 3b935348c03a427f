"""The metering stage: prompt tokens before the call (when a limit needs them), usage and cost after it.

For streams it asks the upstream for the usage chunk (`stream_options.include_usage`) and strips that chunk
again when the client did not ask for it; if an upstream reports no usage, the streamed output is counted.
"""

from __future__ import annotations

from collections.abc import Callable

import anyio
import anyio.to_thread
import orjson

from gateway.calls.context import CallContext, Usage
from gateway.config import ModelConfig
from gateway.errors import GatewayError
from gateway.pipeline.hooks import BaseHook
from gateway.providers.base import DONE_EVENT, Reply
from gateway.usage.pricing import PriceTable, usage_from_response
from gateway.usage.tokens import TokenCounter

# Inputs from this size on are counted in a worker thread, one at a time: the C counter releases the GIL, so the
# event loop serves other calls meanwhile (255 KB of one word take ~0.1 s to count, 16 MB several seconds and, while
# a single-word piece merges, 20 bytes per byte); below it a count takes under ~10 ms.
OFF_LOOP_BYTES = 32 * 1024


class PromptCounter:
    """Token counts for the stages that need them (the meter, the max_tokens check): small inputs on the event loop,
    large ones in a worker thread, one at a time."""

    def __init__(self, tokens: TokenCounter) -> None:
        self.tokens = tokens
        self._limiter: anyio.CapacityLimiter | None = None  # made on first use, inside the running loop

    async def prompt(self, ctx: CallContext) -> int:
        if len(ctx.raw) < OFF_LOOP_BYTES:
            return count_prompt(self.tokens, ctx)
        return await self._off_loop(count_prompt, self.tokens, ctx)

    async def text(self, upstream_model: str, text: str) -> int:
        if len(text) < OFF_LOOP_BYTES:
            return self.tokens.count_text(upstream_model, text)
        return await self._off_loop(self.tokens.count_text, upstream_model, text)

    async def _off_loop(self, count: Callable[..., int], *args: object) -> int:
        if self._limiter is None:
            self._limiter = anyio.CapacityLimiter(1)
        return await anyio.to_thread.run_sync(count, *args, limiter=self._limiter)


class MeterHook(BaseHook):
    name = "meter"

    def __init__(self, counter: PromptCounter, prices: PriceTable) -> None:
        self.counter = counter
        self.prices = prices

    async def before_request(self, ctx: CallContext) -> None:
        key = ctx.principal.key if ctx.principal else None
        if key is not None and (key.budgets or key.counts_tokens):
            ctx.prompt_tokens = await self.counter.prompt(ctx)
        if ctx.stream:
            options = ctx.body.get("stream_options")
            ctx.client_wants_usage = isinstance(options, dict) and options.get("include_usage") is True
            if not ctx.client_wants_usage:
                ctx.body["stream_options"] = {**(options if isinstance(options, dict) else {}), "include_usage": True}
            ctx.stream_events = []

    async def on_stream_chunk(self, ctx: CallContext, event: bytes) -> bytes:
        if b'"usage":{' in event or b'"usage": {' in event:
            data = orjson.loads(event[6:])
            usage = usage_from_response(data)
            if usage is not None:
                ctx.usage = usage
            if not ctx.client_wants_usage and not data.get("choices"):
                return b""  # the usage-only chunk the gateway asked for on its own behalf
        elif ctx.stream_events is not None and event != DONE_EVENT:
            ctx.stream_events.append(event)
        return event

    async def after_response(self, ctx: CallContext, reply: Reply | None) -> None:
        if reply is not None:
            ctx.usage = usage_from_response(reply.data)
        await self._price(ctx)

    async def on_error(self, ctx: CallContext, error: GatewayError) -> None:
        if ctx.stream_events:  # a stream broke off: the upstream billed what it sent
            await self._price(ctx)

    async def _price(self, ctx: CallContext) -> None:
        model = ctx.deployment
        if model is None:
            return
        if ctx.usage is None:
            ctx.usage = await self.count_usage(ctx, model)
        ctx.cost_nanos = self.prices.cost(model, ctx.usage)

    async def count_usage(self, ctx: CallContext, model: ModelConfig) -> Usage:
        """The gateway's own count, for upstreams that report no usage."""
        prompt = ctx.prompt_tokens if ctx.prompt_tokens is not None else await self.counter.prompt(ctx)
        text = "".join(streamed_text(event) for event in ctx.stream_events or ())
        return Usage(prompt, await self.counter.text(model.upstream_model, text) if text else 0)


def count_prompt(tokens: TokenCounter, ctx: CallContext) -> int:
    """Prompt tokens of the call's request, with the tokenizer of the first deployment of its route."""
    upstream = ctx.route[0].config.upstream_model if ctx.route else ctx.model
    if ctx.operation == "chat":
        return tokens.count_chat(upstream, ctx.body)
    if ctx.operation == "completions":
        return tokens.count_completion_prompt(upstream, ctx.body.get("prompt"))  # type: ignore[arg-type]
    return tokens.count_embedding_input(upstream, ctx.body.get("input"))  # type: ignore[arg-type]


def streamed_text(event: bytes) -> str:
    try:
        data = orjson.loads(event[6:])
    except orjson.JSONDecodeError:
        return ""
    parts = []
    for choice in data.get("choices") or ():
        delta = choice.get("delta") or {}
        parts.append(delta.get("content") or choice.get("text") or "")
        for call in delta.get("tool_calls") or ():
            function = call.get("function") or {}
            parts.append((function.get("name") or "") + (function.get("arguments") or ""))
    return "".join(parts)
