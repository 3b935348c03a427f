"""The in-memory index of virtual keys the hot path reads, refreshed when keys or teams change.

Every instance polls the tables' newest `updated_at` every `cache_poll_s` (0.5 s), so a revoked key stops
working within a second everywhere, with or without Redis; with Redis, a change published by one
instance makes the others reload at once (storage/changefeed.py).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy import func
from sqlalchemy import select as core_select
from sqlmodel import select

from gateway.calls.caller import BudgetScope, KeyEntry, Period, RateScope
from gateway.storage.changefeed import ChangeFeed
from gateway.storage.db import Database
from gateway.storage.tables import ApiKey, KeyPrefix, Team

if TYPE_CHECKING:  # redis is imported only when redis_url is set
    from redis.asyncio import Redis


# Newest key change, newest team change, number of keys (a deleted key lowers it): one statement.
_STAMP = core_select(
    core_select(func.max(ApiKey.updated_at)).scalar_subquery(),
    core_select(func.max(Team.updated_at)).scalar_subquery(),
    core_select(func.count()).select_from(ApiKey).scalar_subquery(),
)


def build_entry(key: ApiKey, team: Team | None, prefixes: frozenset[str] = frozenset()) -> KeyEntry:
    budgets: list[BudgetScope] = []
    rates: list[RateScope] = []
    allowed = set(key.allowed_models) if key.allowed_models is not None else None
    if key.budget_nanos is not None:
        budgets.append(BudgetScope(f"key:{key.id}", key.budget_nanos, period_of(key.budget_period)))
    if key.rpm or key.tpm:
        rates.append(RateScope(f"key:{key.id}", key.rpm, key.tpm))
    if team is not None:
        if team.budget_nanos is not None:
            budgets.append(BudgetScope(f"team:{team.id}", team.budget_nanos, period_of(team.budget_period)))
        if team.rpm or team.tpm:
            rates.append(RateScope(f"team:{team.id}", team.rpm, team.tpm))
        if team.allowed_models is not None:
            allowed = set(team.allowed_models) if allowed is None else allowed & set(team.allowed_models)
    return KeyEntry(
        id=key.id,
        name=key.name,
        prefix=key.prefix,
        role=key.role,
        team_id=key.team_id,
        team_name=team.name if team else None,
        allowed_models=frozenset(allowed) if allowed is not None else None,
        budgets=tuple(budgets),
        rates=tuple(rates),
        expires_at=key.expires_at.timestamp() if key.expires_at else None,
        revoked=key.revoked_at is not None,
        aliases=prefixes,
    )


def period_of(value: str) -> Period:
    assert value in ("daily", "weekly", "monthly", "total"), value
    return value  # type: ignore[return-value]


class KeyCache:
    """key hash -> KeyEntry, replaced wholesale on change (readers never see a half-built index)."""

    def __init__(self, db: Database, *, redis: Redis | None = None) -> None:
        self.db = db
        self._by_hash: dict[str, KeyEntry] = {}
        self.names: frozenset[str] = frozenset()  # every key id and every prefix any key has had
        self.feed = ChangeFeed("keys", stamp=self._current_version, reload=self._load, redis=redis)

    def get(self, key_hash: str) -> KeyEntry | None:
        return self._by_hash.get(key_hash)

    def entries(self) -> list[KeyEntry]:
        return [entry for entry in self._by_hash.values() if not entry.revoked]

    async def _current_version(self) -> tuple[object, ...]:
        return await self.db.read_row(_STAMP)

    async def _load(self) -> None:
        async with self.db.session() as session:
            teams = {t.id: t for t in (await session.exec(select(Team))).all()}
            keys = (await session.exec(select(ApiKey))).all()
            prefixes: dict[str, set[str]] = {}
            for row in (await session.exec(select(KeyPrefix))).all():
                prefixes.setdefault(row.key_id, set()).add(row.prefix)
        self._by_hash = {
            k.key_hash: build_entry(k, teams.get(k.team_id) if k.team_id else None, frozenset(prefixes.get(k.id, ())))
            for k in keys
        }
        self.names = frozenset(name for entry in self._by_hash.values() for name in entry.aliases)

    async def reload(self) -> None:
        await self.feed.refresh(force=True)

    async def changed(self) -> None:
        """After a write: reload here, and tell the other instances through Redis when there is one."""
        await self.feed.changed()
