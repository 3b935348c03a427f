"""Pipeline: the one place that owns hook order, short-circuits, the upstream call and its timings."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Sequence

from gateway.calls.context import CallContext
from gateway.errors import ClientDisconnected, GatewayError, drop_frames, internal_error, sse_error_event
from gateway.pipeline.dispatch import Dispatcher
from gateway.pipeline.hooks import BaseHook, overrides
from gateway.providers.base import DONE_EVENT, Reply

log = logging.getLogger("gateway.pipeline")
DISCONNECTED = ClientDisconnected("The client closed the connection before the answer was complete.")


class Pipeline:
    """Runs hooks in the order given around the dispatcher. Hooks that do not override a method cost nothing."""

    def __init__(self, hooks: Sequence[BaseHook], dispatcher: Dispatcher) -> None:
        self.hooks = tuple(hooks)
        self.dispatcher = dispatcher
        self._before = [h.before_request for h in hooks if overrides(h, "before_request")]
        self._chunk = [h.on_stream_chunk for h in hooks if overrides(h, "on_stream_chunk")]
        self._after = [h.after_response for h in hooks if overrides(h, "after_response")]
        self._error = [h.on_error for h in hooks if overrides(h, "on_error")]

    async def run(self, ctx: CallContext) -> Reply | AsyncIterator[bytes]:
        """Runs the before stages, then the upstream call: a Reply, or for streams an iterator of SSE events.
        Errors up to a stream's first event raise here, so the client gets a proper HTTP status."""
        try:
            for before in self._before:
                if (pending := before(ctx)) is not None:  # plain stages return None (pipeline/hooks.py)
                    await pending
            if ctx.answer is not None:  # a stage answered the call itself (e.g. released an approved tool call)
                if ctx.stream:
                    events = replay(ctx.answer_events or [DONE_EVENT])
                    return self._relay(ctx, await anext(events), events)
                reply = ctx.answer
            elif ctx.stream:
                first, events = await self.dispatcher.open_stream(ctx)
                return self._relay(ctx, first, events)
            else:
                reply = await self.dispatcher.send(ctx)
            for after in self._after:
                if (pending := after(ctx, reply)) is not None:
                    await pending
            return reply
        except GatewayError as exc:
            await self._fail(ctx, exc)
            raise
        except asyncio.CancelledError:
            await self._fail(ctx, DISCONNECTED)
            raise

    async def _relay(self, ctx: CallContext, first: bytes, events: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        try:
            event: bytes | None = first
            while event is not None:
                done = event == DONE_EVENT
                for chunk_hook in self._chunk:
                    event = await chunk_hook(ctx, event)
                    if not event:
                        break  # a stage swallowed the event (e.g. the usage chunk the client did not ask for)
                if done:
                    # Records and settlements happen before the client sees the end of the stream.
                    for after in self._after:
                        if (pending := after(ctx, None)) is not None:
                            await pending
                    ctx.completed = True
                if event:
                    yield event
                event = await anext(events, None)
        except GatewayError as exc:
            # Headers are gone: the error becomes the stream's last event.
            await self._fail(ctx, exc)
            last = sse_error_event(exc)
            drop_frames(exc)
            yield last
        except Exception as exc:  # noqa: BLE001 - converted, like errors.py does for JSON responses
            log.exception("stream %s failed", ctx.request_id)
            error = internal_error(ctx.request_id)
            await self._fail(ctx, error)
            yield sse_error_event(error)
            del exc
        except (asyncio.CancelledError, GeneratorExit):
            if ctx.error is None and not ctx.completed:
                await self._fail(ctx, DISCONNECTED)
            # The cancellation's traceback holds this frame, and whoever cancelled (anyio's task group) holds the
            # cancellation: without ctx in the frame, that cycle does not keep the call's context alive.
            del ctx
            raise
        finally:
            await events.aclose()  # type: ignore[attr-defined]

    async def _fail(self, ctx: CallContext, error: GatewayError) -> None:
        ctx.error = error
        ctx.status_code = error.status_code
        for on_error in self._error:
            try:
                if (pending := on_error(ctx, error)) is not None:
                    await pending
            except Exception:  # one failing release must not hide the original error or skip the others
                log.exception("on_error hook failed for %s", ctx.request_id)


async def replay(events: list[bytes]) -> AsyncIterator[bytes]:
    for event in events:
        yield event
