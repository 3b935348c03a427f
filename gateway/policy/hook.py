"""The guardrail stages: input checks before the call, output checks after it (streams through a StreamGuard)."""

from __future__ import annotations

import orjson

from gateway.calls.context import CallContext
from gateway.pipeline.hooks import BaseHook
from gateway.policy.guardrails import GuardrailEngine, input_slots, output_slots
from gateway.policy.streamguard import StreamGuard
from gateway.providers.base import Reply


class InputGuardrailHook(BaseHook):
    name = "input_guardrails"

    def __init__(self, engine: GuardrailEngine) -> None:
        self.engine = engine

    async def before_request(self, ctx: CallContext) -> None:
        await self.engine.run(ctx, "input", input_slots(ctx))


class OutputGuardrailHook(BaseHook):
    """Non-streamed answers are checked whole; streams go through a StreamGuard window (streamguard.py)."""

    name = "output_guardrails"

    def __init__(self, engine: GuardrailEngine) -> None:
        self.engine = engine

    def before_request(self, ctx: CallContext) -> None:
        if ctx.stream:
            guardrails = self.engine.guardrails(ctx, "output")
            if guardrails:
                ctx.stream_guard = StreamGuard(self.engine, guardrails)

    async def on_stream_chunk(self, ctx: CallContext, event: bytes) -> bytes:
        guard = ctx.stream_guard
        return await guard.on_event(ctx, event) if guard is not None else event

    async def after_response(self, ctx: CallContext, reply: Reply | None) -> None:
        if reply is None:
            return
        if await self.engine.run(ctx, "output", output_slots(reply.data)):
            reply.body = orjson.dumps(reply.data)
