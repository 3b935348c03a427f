"""The parse stage: the raw body -> a checked OpenAI-shaped request (body, model, stream) on the context."""

from __future__ import annotations

from gateway.calls.context import CallContext
from gateway.pipeline.hooks import BaseHook
from gateway.schemas.openai import check_chat, check_completion, check_embedding, parse_json_body


class ParseHook(BaseHook):
    """Runs right after auth, so unauthenticated callers learn nothing about what the gateway accepts."""

    name = "parse"

    def before_request(self, ctx: CallContext) -> None:
        body = parse_json_body(ctx.raw)
        if ctx.operation == "chat":
            ctx.model, ctx.stream = check_chat(body)
        elif ctx.operation == "completions":
            ctx.model, ctx.stream = check_completion(body)
        else:
            ctx.model, ctx.stream = check_embedding(body), False
        ctx.body = body
