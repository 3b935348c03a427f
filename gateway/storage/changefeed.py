"""ChangeFeed: keeps one in-memory cache current on every instance (keys, tool suspensions, prompt labels).

The cache names a cheap `stamp` query (counts, newest timestamps) and a `reload`. The instance that writes
calls changed(): it reloads at once and, with Redis, publishes on the cache's channel so the others reload at
once too. Every instance also polls every stamp every `cache_poll_s` (config, 0.5 s by default; `poll_feeds`), so
a change is seen within that time without Redis, or when a notice is lost. Database or Redis hiccups are logged
and retried, never fatal.

Polling costs CPU on an idle instance too, so each stamp is one Core statement (`Database.read_row`; two
queries in an ORM session cost three times as much), and one task polls every feed in turn. Three feeds polling
on their own ticks ran their queries at once, beyond the pool's two SQLite connections, and SQLAlchemy opened
and closed an extra connection (with aiosqlite, a thread) for each of them twice a second: an idle gateway used
27 ms of CPU a second, 15 with one task and Core statements (7 with no polls at all; measured on 2026-12-05).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # redis is imported only when redis_url is set
    from redis.asyncio import Redis


log = logging.getLogger("gateway.changes")


class ChangeFeed:
    def __init__(
        self,
        name: str,
        *,
        stamp: Callable[[], Awaitable[object]],
        reload: Callable[[], Awaitable[None]],
        redis: Redis | None = None,
    ) -> None:
        self.name = name
        self.channel = f"gw:{name}:changed"
        self.stamp = stamp
        self.reload = reload
        self.redis = redis
        self._seen: object = None

    async def refresh(self, *, force: bool = False) -> bool:
        """Reload when the stamp moved (or when forced); the stamp is read first, so no change is missed."""
        stamp = await self.stamp()
        if not force and stamp == self._seen:
            return False
        await self.reload()
        self._seen = stamp
        return True

    async def changed(self) -> None:
        """After a write on this instance: reload here, and tell the others through Redis when there is one."""
        await self.refresh(force=True)
        if self.redis is not None:
            await self.redis.publish(self.channel, b"1")

    async def listen(self) -> None:
        """Background loop (Redis only): refresh as soon as another instance announces a change."""
        assert self.redis is not None
        async with self.redis.pubsub(ignore_subscribe_messages=True) as pubsub:
            await pubsub.subscribe(self.channel)
            async for _ in pubsub.listen():
                try:
                    await self.refresh(force=True)
                except Exception:
                    log.warning("could not reload the %s cache after a change notice", self.name, exc_info=True)


async def poll_feeds(feeds: Sequence[ChangeFeed], *, interval_s: float) -> None:
    """Background loop: every `interval_s`, each feed in turn reads its stamp and reloads if it moved."""
    while True:
        await asyncio.sleep(interval_s)
        for feed in feeds:
            try:
                await feed.refresh()
            except Exception:  # the loop must outlive a database outage
                log.warning("could not refresh the %s cache; keeping the current one", feed.name, exc_info=True)
