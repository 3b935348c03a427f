"""Fixtures of the counters' tests: both stores (memory, and the real Redis on 127.0.0.1:6379 under a fresh key prefix
per test) and the fixed times and scopes they are tested at."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta

import pytest
from redis.asyncio import Redis

from gateway.limits.counters import BudgetScope, Counters
from gateway.limits.counters_memory import MemoryCounters
from gateway.limits.counters_redis import RedisCounters

REDIS_URL = "redis://127.0.0.1:6379/0"
NOW = datetime(2026, 5, 13, 12, 0, tzinfo=UTC)  # a Wednesday
KEY = BudgetScope("key:k1", 100, "monthly")
TEAM = BudgetScope("team:t1", 100, "monthly")
KEY_500 = BudgetScope("key:k1", 500, "monthly")
# The documented figures, written out (not imported) so a changed constant fails here.
MAX_AMOUNT = 2**53  # nano-dollars, exact in Redis' doubles
SETTLE_GRACE_S = 86_400  # a lapsed reservation can still be settled for a day
PERIOD_MARGIN_S = 86_400  # a finished period's counters stay readable for a day

MakeCounters = Callable[..., Counters]


def at(seconds: float) -> datetime:
    return NOW + timedelta(seconds=seconds)


@pytest.fixture
async def redis_client() -> AsyncIterator[Redis]:
    # Room for 200 concurrent calls: the default pool refuses past 100 (RedisCounters.from_url's pool waits instead).
    client = Redis.from_url(REDIS_URL, max_connections=256)
    yield client
    await client.aclose()


@pytest.fixture
async def redis_prefix(redis_client: Redis) -> AsyncIterator[str]:
    """A fresh key prefix per test; its keys are deleted afterwards."""
    prefix = f"gwtest:{uuid.uuid4().hex[:12]}:"
    yield prefix
    keys = [key async for key in redis_client.scan_iter(match=f"{prefix}*")]
    if keys:
        await redis_client.delete(*keys)


@pytest.fixture(params=["memory", "redis"])
def make_counters(request: pytest.FixtureRequest) -> MakeCounters:
    if request.param == "memory":
        return MemoryCounters
    client, prefix = request.getfixturevalue("redis_client"), request.getfixturevalue("redis_prefix")
    return lambda **kwargs: RedisCounters(client, prefix=prefix, **kwargs)  # shares the fixture's client


@pytest.fixture
def counters(make_counters: MakeCounters) -> Counters:
    return make_counters()
