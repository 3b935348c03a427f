"""The kill switch: suspend the tool calls of one key, or of everyone, at once; read from memory on the hot path.

Suspensions are rows in tool_suspensions. The instance that writes one reloads at once; the others hear of it
through Redis pub/sub when there is Redis, and by polling the table every second in any case.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime

from redis.asyncio import Redis
from sqlalchemy import delete, func
from sqlmodel import select

from gateway.storage.db import Database
from gateway.storage.tables import ToolSuspension

log = logging.getLogger("gateway.approvals")
CHANNEL = "gw:tools:changed"
ALL = "all"


def scope_of(key_id: str | None) -> str:
    """ "all" for every key, "key:<id>" for one."""
    return ALL if key_id is None else f"key:{key_id}"


class ToolSwitch:
    def __init__(self, db: Database, *, redis: Redis | None = None, poll_s: float = 1.0) -> None:
        self.db = db
        self.redis = redis
        self.poll_s = poll_s
        self._by_scope: dict[str, ToolSuspension] = {}
        self._version: tuple[int, datetime | None] | None = None

    def suspended(self, key_id: str | None) -> ToolSuspension | None:
        """The suspension that stops this key's tool calls, if any (everyone's first)."""
        if not self._by_scope:
            return None
        return self._by_scope.get(ALL) or self._by_scope.get(scope_of(key_id) if key_id else "key:master")

    def suspensions(self) -> list[ToolSuspension]:
        return sorted(self._by_scope.values(), key=lambda row: row.created_at)

    async def suspend(self, scope: str, *, by: str, reason: str | None) -> ToolSuspension:
        async with self.db.session() as session:
            row = await session.get(ToolSuspension, scope)
            if row is None:
                row = ToolSuspension(scope=scope, reason=reason, suspended_by=by)
                session.add(row)
                await session.commit()
        await self.changed()
        return row

    async def lift(self, scope: str) -> bool:
        """Removes a suspension; False when there was none for that scope."""
        async with self.db.engine.begin() as connection:
            removed = (await connection.execute(delete(ToolSuspension).where(ToolSuspension.scope == scope))).rowcount
        await self.changed()
        return bool(removed)

    async def _current_version(self) -> tuple[int, datetime | None]:
        async with self.db.session() as session:
            query = select(func.count(), func.max(ToolSuspension.created_at)).select_from(ToolSuspension)
            count, newest = (await session.exec(query)).one()
        return count, newest

    async def reload(self) -> None:
        version = await self._current_version()
        async with self.db.session() as session:
            rows = (await session.exec(select(ToolSuspension))).all()
        self._by_scope = {row.scope: row for row in rows}
        self._version = version

    async def changed(self) -> None:
        await self.reload()
        if self.redis is not None:
            await self.redis.publish(CHANNEL, b"1")

    async def run(self) -> None:
        """Background loop: reload when the table's row count or newest row changed."""
        while True:
            await asyncio.sleep(self.poll_s)
            try:
                if await self._current_version() != self._version:
                    await self.reload()
            except Exception:  # the loop must outlive a database outage
                log.warning("could not refresh tool suspensions; keeping the current ones", exc_info=True)

    async def listen(self) -> None:
        """Background loop (Redis only): reload as soon as another instance announces a change."""
        assert self.redis is not None
        async with self.redis.pubsub(ignore_subscribe_messages=True) as pubsub:
            await pubsub.subscribe(CHANNEL)
            async for _ in pubsub.listen():
                try:
                    await self.reload()
                except Exception:
                    log.warning("could not reload tool suspensions after a change notice", exc_info=True)
