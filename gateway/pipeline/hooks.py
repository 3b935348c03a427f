"""BaseHook: the stage interface, with no-op before_request, on_stream_chunk, after_response, on_error.

before_request, after_response and on_error may be coroutine functions or plain ones: the runner awaits what a
stage returns unless it is None. A stage that never waits is a plain `def` (no coroutine to create and run per
call: ~0.4 µs each, for a dozen stage calls per request); one that waits only sometimes returns a coroutine then.
"""

from __future__ import annotations

from collections.abc import Awaitable

from gateway.calls.context import CallContext
from gateway.errors import GatewayError
from gateway.providers.base import Reply


class BaseHook:
    """A pipeline stage. Override only what the stage needs; stop a call by raising a GatewayError."""

    name = "hook"

    def before_request(self, ctx: CallContext) -> Awaitable[None] | None:
        """Runs before the upstream call, in pipeline order. Raises GatewayError to refuse the call."""
        return None

    async def on_stream_chunk(self, ctx: CallContext, event: bytes) -> bytes:
        """Sees every SSE event of a stream before the client does; returns the event to send."""
        return event

    def after_response(self, ctx: CallContext, reply: Reply | None) -> Awaitable[None] | None:
        """Runs after a successful call (reply is None for streams, which completed)."""
        return None

    def on_error(self, ctx: CallContext, error: GatewayError) -> Awaitable[None] | None:
        """Runs once when the call failed at any stage, so hooks can release what they hold."""
        return None


def overrides(hook: BaseHook, method: str) -> bool:
    return getattr(type(hook), method) is not getattr(BaseHook, method)
