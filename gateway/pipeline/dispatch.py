"""Calls a route's deployments in order, retrying each with backoff on connect errors, 429 and 5xx."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TypeVar

from gateway.calls.context import CallContext
from gateway.errors import GatewayError, NotFound, RateLimited, UpstreamError, UpstreamInvalidRequest
from gateway.providers.base import Deployment, Reply

log = logging.getLogger("gateway.dispatch")
T = TypeVar("T")
MAX_RETRY_AFTER_S = 5.0
# Failures another deployment may not share; a 400 from the upstream means the request itself is wrong.
FALLBACK_ERRORS = (UpstreamError, RateLimited, NotFound)


class Dispatcher:
    """Owns retries, backoff and fallbacks; a stream is never retried once its first event exists."""

    def __init__(self, *, backoff_s: float, sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> None:
        self.backoff_s = backoff_s
        self._sleep = sleep

    async def send(self, ctx: CallContext) -> Reply:
        async def attempt(deployment: Deployment) -> Reply:
            return await deployment.provider.send(ctx.operation, deployment.config, ctx.body)

        return await self._run(ctx, attempt)

    async def open_stream(self, ctx: CallContext) -> tuple[bytes, AsyncIterator[bytes]]:
        """The first event and the rest of the stream. Failures before the first event are retried."""

        async def attempt(deployment: Deployment) -> tuple[bytes, AsyncIterator[bytes]]:
            events = deployment.provider.stream(ctx.operation, deployment.config, ctx.body)
            try:
                first = await anext(events)
            except StopAsyncIteration:
                raise GatewayError("Upstream ended the stream without sending anything.") from None
            except BaseException:
                await events.aclose()  # type: ignore[attr-defined]
                raise
            return first, events

        return await self._run(ctx, attempt)

    async def _run(self, ctx: CallContext, attempt: Callable[[Deployment], Awaitable[T]]) -> T:
        started = time.perf_counter()
        try:
            last: GatewayError | None = None
            route = ctx.route
            for position, deployment in enumerate(route):
                for retry in range(deployment.config.max_retries + 1):
                    ctx.attempts += 1
                    ctx.deployment = deployment.config
                    try:
                        return await attempt(deployment)
                    except GatewayError as exc:
                        last = exc
                        if isinstance(exc, UpstreamInvalidRequest) or not isinstance(exc, FALLBACK_ERRORS):
                            raise  # the request itself is wrong: another deployment will not help
                        if not exc.retryable or retry == deployment.config.max_retries:
                            break
                        await self._sleep(self._delay(retry, exc))
                if last is not None and position + 1 < len(route):
                    log.warning("model %s failed (%s); trying fallback %s", deployment.config.name, last.message,
                                route[position + 1].config.name)  # fmt: skip
                elif last is not None and position:
                    log.warning("model %s failed (%s); no fallback left", deployment.config.name, last.message)
            assert last is not None, "a route has at least one deployment"
            raise last
        finally:
            ctx.upstream_s += time.perf_counter() - started
            # A failed attempt's traceback holds this frame, which would hold the error and ctx: a reference cycle
            # per call that succeeded on a retry or a fallback (errors.drop_frames handles answered errors).
            last = None

    def _delay(self, retry: int, exc: GatewayError) -> float:
        retry_after = exc.headers.get("retry-after")
        if retry_after:
            try:
                return min(float(retry_after), MAX_RETRY_AFTER_S)
            except ValueError:
                pass
        base = self.backoff_s * (2**retry)
        return base * (0.5 + random.random() / 2)  # jitter keeps retrying clients from moving in step
