"""The kill switch: suspend the tool calls of one key, or of everyone, at once; read from memory on the hot path.

Suspensions are rows in tool_suspensions. The instance that writes one reloads at once; the others hear of it
through Redis pub/sub when there is Redis, and by polling the table every `cache_poll_s` (0.5 s) in any case.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING

from sqlalchemy import delete, func
from sqlalchemy import select as core_select
from sqlmodel import select

from gateway.storage.changefeed import ChangeFeed
from gateway.storage.db import Database
from gateway.storage.tables import ToolSuspension

if TYPE_CHECKING:  # redis is imported only when redis_url is set
    from redis.asyncio import Redis

ALL = "all"
_STAMP = core_select(func.count(), func.max(ToolSuspension.created_at)).select_from(ToolSuspension)


def scope_of(key_id: str | None) -> str:
    """ "all" for every key, "key:<id>" for one."""
    return ALL if key_id is None else f"key:{key_id}"


class ToolSwitch:
    def __init__(self, db: Database, *, redis: Redis | None = None) -> None:
        self.db = db
        self._by_scope: dict[str, ToolSuspension] = {}
        self.feed = ChangeFeed("tools", stamp=self._current_version, reload=self._load, redis=redis)

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
            else:  # suspending again restates why and who: the newest word stands
                row.reason, row.suspended_by, row.created_at = reason, by, datetime.now(UTC)
            session.add(row)
            await session.commit()
            await session.refresh(row)
        await self.feed.changed()
        return row

    async def lift(self, scope: str) -> bool:
        """Removes a suspension; False when there was none for that scope."""
        async with self.db.engine.begin() as connection:
            removed = (await connection.execute(delete(ToolSuspension).where(ToolSuspension.scope == scope))).rowcount
        await self.feed.changed()
        return bool(removed)

    async def _current_version(self) -> tuple[object, ...]:
        return await self.db.read_row(_STAMP)

    async def _load(self) -> None:
        async with self.db.session() as session:
            rows = (await session.exec(select(ToolSuspension))).all()
        self._by_scope = {row.scope: row for row in rows}

    async def reload(self) -> None:
        await self.feed.refresh(force=True)
