"""BaseHook: the stage interface, with no-op before_request, on_stream_chunk, after_response, on_error."""

from __future__ import annotations

from gateway.errors import GatewayError
from gateway.pipeline.context import CallContext
from gateway.providers.base import Reply


class BaseHook:
    """A pipeline stage. Override only what the stage needs; stop a call by raising a GatewayError."""

    name = "hook"

    async def before_request(self, ctx: CallContext) -> None:
        """Runs before the upstream call, in pipeline order. Raises GatewayError to refuse the call."""

    async def on_stream_chunk(self, ctx: CallContext, event: bytes) -> bytes:
        """Sees every SSE event of a stream before the client does; returns the event to send."""
        return event

    async def after_response(self, ctx: CallContext, reply: Reply | None) -> None:
        """Runs after a successful call (reply is None for streams, which completed)."""

    async def on_error(self, ctx: CallContext, error: GatewayError) -> None:
        """Runs once when the call failed at any stage, so hooks can release what they hold."""


def overrides(hook: BaseHook, method: str) -> bool:
    return getattr(type(hook), method) is not getattr(BaseHook, method)
