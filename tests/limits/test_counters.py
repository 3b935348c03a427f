"""Tests for gateway.limits.counters_memory and counters_redis (the real Redis on 127.0.0.1:6379)."""

from __future__ import annotations

import asyncio
import tracemalloc
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta, timezone

import pytest
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError

from gateway.limits import counters_memory
from gateway.limits.counters import (
    BudgetRefusal,
    BudgetScope,
    Counters,
    Period,
    RateScope,
    period_start,
)
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


@pytest.mark.parametrize(
    ("period", "now", "start"),
    [
        ("daily", datetime(2026, 5, 13, 23, 59, 59, 999999, tzinfo=UTC), datetime(2026, 5, 13, tzinfo=UTC)),
        ("daily", datetime(2026, 5, 14, tzinfo=UTC), datetime(2026, 5, 14, tzinfo=UTC)),
        ("weekly", datetime(2026, 5, 13, 12, tzinfo=UTC), datetime(2026, 5, 11, tzinfo=UTC)),  # Wed -> Mon
        ("weekly", datetime(2026, 5, 17, 23, 59, tzinfo=UTC), datetime(2026, 5, 11, tzinfo=UTC)),  # Sunday
        ("weekly", datetime(2026, 5, 18, tzinfo=UTC), datetime(2026, 5, 18, tzinfo=UTC)),  # Monday 00:00
        ("weekly", datetime(2026, 1, 1, tzinfo=UTC), datetime(2025, 12, 29, tzinfo=UTC)),  # across a year
        ("monthly", datetime(2026, 5, 31, 23, 59, tzinfo=UTC), datetime(2026, 5, 1, tzinfo=UTC)),
        ("monthly", datetime(2026, 6, 1, tzinfo=UTC), datetime(2026, 6, 1, tzinfo=UTC)),
        ("monthly", datetime(2024, 2, 29, 8, tzinfo=UTC), datetime(2024, 2, 1, tzinfo=UTC)),
        ("total", datetime(2026, 5, 13, tzinfo=UTC), datetime(1970, 1, 1, tzinfo=UTC)),
        # Another zone's local time counts by its UTC instant: 01:00 at +02:00 is the previous UTC day.
        ("daily", datetime(2026, 5, 14, 1, tzinfo=timezone(timedelta(hours=2))), datetime(2026, 5, 13, tzinfo=UTC)),
    ],
)
def test_period_start_table(period: Period, now: datetime, start: datetime) -> None:
    assert period_start(period, now) == start


def test_period_start_naive_datetime_raises() -> None:
    with pytest.raises(ValueError, match=r"^Counters need a timezone-aware datetime; pass datetime\.now\(UTC\)\.$"):
        period_start("daily", datetime(2026, 5, 13))


def test_period_start_unknown_period_raises() -> None:
    with pytest.raises(
        ValueError, match=r"^Unknown budget period 'yearly'; expected daily, weekly, monthly or total\.$"
    ):
        period_start("yearly", NOW)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("spent", "reserved", "amount", "allowed"),
    [
        (0, 0, 100, True),
        (0, 0, 101, False),
        (60, 0, 40, True),
        (60, 0, 41, False),
        (30, 30, 40, True),
        (30, 30, 41, False),
        (100, 0, 0, True),
        (0, 100, 1, False),
    ],
)
async def test_reserve_boundary_at_limit_allowed_one_over_refused(
    counters: Counters, spent: int, reserved: int, amount: int, allowed: bool
) -> None:
    await counters.seed_spent(KEY.name, KEY.period, period_start(KEY.period, NOW), spent)
    if reserved:
        assert await counters.reserve("other", [KEY], reserved, now=NOW) is None

    refusal = await counters.reserve("r1", [KEY], amount, now=NOW)

    assert refusal == (None if allowed else BudgetRefusal(KEY, spent, reserved, amount))
    assert await counters.get_budget(KEY, now=NOW) == (spent, reserved + (amount if allowed else 0))


async def test_reserve_team_refuses_reserves_on_neither_scope(counters: Counters) -> None:
    key, team = BudgetScope("key:k1", 1000, "daily"), BudgetScope("team:t1", 50, "monthly")

    refusal = await counters.reserve("r1", [key, team], 60, now=NOW)

    assert refusal == BudgetRefusal(team, 0, 0, 60)
    assert await counters.get_budget(key, now=NOW) == (0, 0)
    assert await counters.get_budget(team, now=NOW) == (0, 0)
    assert await counters.reserve("r2", [key, team], 50, now=NOW) is None
    assert await counters.get_budget(key, now=NOW) == (0, 50)
    assert await counters.get_budget(team, now=NOW) == (0, 50)


async def test_reserve_first_refusing_scope_is_reported(counters: Counters) -> None:
    assert await counters.reserve("r1", [KEY, TEAM], 70, now=NOW) is None
    assert await counters.reserve("r2", [KEY, TEAM], 31, now=NOW) == BudgetRefusal(KEY, 0, 70, 31)


async def test_settle_books_actual_on_every_scope_and_is_idempotent(counters: Counters) -> None:
    assert await counters.reserve("r1", [KEY, TEAM], 80, now=NOW) is None

    await counters.settle("r1", 30, now=at(1))
    await counters.settle("r1", 30, now=at(2))  # a second settle changes nothing
    await counters.release("r1")

    assert await counters.get_budget(KEY, now=NOW) == (30, 0)
    assert await counters.get_budget(TEAM, now=NOW) == (30, 0)
    assert await counters.reserve("r2", [KEY, TEAM], 71, now=NOW) == BudgetRefusal(KEY, 30, 0, 71)


async def test_release_frees_everything_and_is_idempotent(counters: Counters) -> None:
    assert await counters.reserve("r1", [KEY, TEAM], 100, now=NOW) is None

    await counters.release("r1")
    await counters.release("r1")
    await counters.settle("r1", 100, now=NOW)  # already finished: books nothing

    assert await counters.get_budget(KEY, now=NOW) == (0, 0)
    assert await counters.get_budget(TEAM, now=NOW) == (0, 0)


async def test_settle_and_release_unknown_request_are_noops(counters: Counters) -> None:
    await counters.settle("nope", 10, now=NOW)
    await counters.release("nope")
    assert await counters.get_budget(KEY, now=NOW) == (0, 0)


async def test_reserve_same_request_twice_raises(counters: Counters) -> None:
    assert await counters.reserve("r1", [KEY], 10, now=NOW) is None
    with pytest.raises(ValueError, match=r"^Request 'r1' already holds a reservation\.$"):
        await counters.reserve("r1", [KEY], 10, now=NOW)
    assert await counters.get_budget(KEY, now=NOW) == (0, 10)


async def test_reserve_without_scopes_holds_nothing(counters: Counters) -> None:
    assert await counters.reserve("r1", [], 10, now=NOW) is None
    assert await counters.reserve("r1", [], 10, now=NOW) is None  # nothing held, so the id is not taken
    await counters.settle("r1", 10, now=NOW)
    assert await counters.get_budget(KEY, now=NOW) == (0, 0)


async def test_reserve_naive_now_raises(counters: Counters) -> None:
    with pytest.raises(ValueError, match=r"^Counters need a timezone-aware datetime; pass datetime\.now\(UTC\)\.$"):
        await counters.reserve("r1", [KEY], 10, now=datetime(2026, 5, 13))


@pytest.mark.parametrize(
    ("period", "before", "after", "resets"),
    [
        ("daily", datetime(2026, 5, 13, 23, 59, 59, tzinfo=UTC), datetime(2026, 5, 14, tzinfo=UTC), True),
        ("daily", datetime(2026, 5, 13, 0, 0, tzinfo=UTC), datetime(2026, 5, 13, 23, 59, 59, tzinfo=UTC), False),
        ("weekly", datetime(2026, 5, 17, 23, 59, tzinfo=UTC), datetime(2026, 5, 18, tzinfo=UTC), True),  # Sun->Mon
        ("weekly", datetime(2026, 5, 11, tzinfo=UTC), datetime(2026, 5, 17, 23, 59, tzinfo=UTC), False),  # Mon->Sun
        ("monthly", datetime(2026, 5, 31, 23, 59, tzinfo=UTC), datetime(2026, 6, 1, tzinfo=UTC), True),
        ("monthly", datetime(2026, 5, 1, tzinfo=UTC), datetime(2026, 5, 31, 23, 59, tzinfo=UTC), False),
        ("total", datetime(2026, 5, 13, tzinfo=UTC), datetime(2031, 1, 1, tzinfo=UTC), False),
    ],
)
async def test_spending_counts_only_in_its_period(
    counters: Counters, period: Period, before: datetime, after: datetime, resets: bool
) -> None:
    scope = BudgetScope("key:k1", 100, period)
    assert await counters.reserve("r1", [scope], 100, now=before) is None
    await counters.settle("r1", 100, now=before)

    refusal = await counters.reserve("r2", [scope], 1, now=after)

    assert refusal == (None if resets else BudgetRefusal(scope, 100, 0, 1))
    assert await counters.get_budget(scope, now=after) == ((0, 1) if resets else (100, 0))


async def test_settle_after_period_end_books_in_reservation_period(counters: Counters) -> None:
    scope = BudgetScope("key:k1", 100, "daily")
    assert await counters.reserve("r1", [scope], 100, now=datetime(2026, 5, 13, 23, 59, tzinfo=UTC)) is None

    await counters.settle("r1", 80, now=datetime(2026, 5, 14, 0, 1, tzinfo=UTC))

    assert await counters.get_budget(scope, now=datetime(2026, 5, 13, 23, 59, tzinfo=UTC)) == (80, 0)
    assert await counters.get_budget(scope, now=datetime(2026, 5, 14, 0, 2, tzinfo=UTC)) == (0, 0)


async def test_concurrent_reserves_never_overspend(counters: Counters) -> None:
    results = await asyncio.gather(*(counters.reserve(f"r{i}", [KEY_500], 10, now=NOW) for i in range(200)))

    winners = [f"r{i}" for i, refusal in enumerate(results) if refusal is None]
    assert len(winners) == 50
    await asyncio.gather(*(counters.settle(r, 10, now=NOW) for r in winners))
    assert await counters.get_budget(KEY_500, now=NOW) == (500, 0)
    assert await counters.reserve("late", [KEY_500], 1, now=NOW) == BudgetRefusal(KEY_500, 500, 0, 1)


async def test_redis_two_processes_interleaved_never_overspend(redis_prefix: str) -> None:
    """Two RedisCounters on separate connections stand in for two gateway processes."""
    a = await RedisCounters.from_url(REDIS_URL, prefix=redis_prefix)
    b = await RedisCounters.from_url(REDIS_URL, prefix=redis_prefix)
    try:
        scopes = [KEY_500, BudgetScope("team:t1", 10_000, "daily")]
        procs = [a, b]

        async def reserve(i: int) -> BudgetRefusal | None:
            # Spread over ~10 ms: each process pipelines the calls of one loop turn, so without the spread the
            # first process's batch of 100 would arrive whole before the other's.
            await asyncio.sleep(0.0005 * (i // 2 % 20))
            return await procs[i % 2].reserve(f"r{i}", scopes, 10, now=NOW)

        results = await asyncio.gather(*(reserve(i) for i in range(200)))
        winners = [i for i, refusal in enumerate(results) if refusal is None]
        assert len(winners) == 50
        assert {i % 2 for i in winners} == {0, 1}  # both processes won some

        await asyncio.gather(*(procs[(i + 1) % 2].settle(f"r{i}", 10, now=NOW) for i in winners))

        assert await a.get_budget(KEY_500, now=NOW) == (500, 0)
        assert await b.get_budget(scopes[1], now=NOW) == (500, 0)
        assert await b.reserve("late", scopes, 1, now=NOW) == BudgetRefusal(KEY_500, 500, 0, 1)
    finally:
        await a.close()
        await b.close()


async def test_reservation_lapses_after_ttl_and_late_settle_still_books(make_counters: MakeCounters) -> None:
    counters = make_counters(reservation_ttl_s=1)
    assert await counters.reserve("crashed", [KEY], 60, now=NOW) is None
    assert await counters.reserve("slow", [KEY], 40, now=at(0.5)) is None
    assert await counters.reserve("r3", [KEY], 1, now=at(0.9)) == BudgetRefusal(KEY, 0, 100, 1)

    assert await counters.get_budget(KEY, now=at(1)) == (0, 40)  # "crashed" lapsed at exactly its TTL
    assert await counters.reserve("r4", [KEY], 60, now=at(1.2)) is None
    assert await counters.get_budget(KEY, now=at(3)) == (0, 0)  # "slow" lapsed at 1.5, r4 at 2.2
    await counters.settle("slow", 35, now=at(5))  # lapsed, still booked: through the lapsed hold's own path
    await counters.release("crashed")  # lapsed: nothing left to free
    await counters.settle("crashed", 20, now=at(5))  # released after lapsing: books nothing

    assert await counters.get_budget(KEY, now=at(5)) == (35, 0)
    with pytest.raises(ValueError, match="already holds"):  # a lapsed hold's id stays taken while it can settle
        await counters.reserve("r4", [KEY], 1, now=at(6))


async def test_reservation_of_a_crashed_call_lapses_after_15_minutes_by_default(counters: Counters) -> None:
    assert await counters.reserve("crashed", [KEY], 60, now=NOW) is None
    assert await counters.get_budget(KEY, now=at(899.9)) == (0, 60)
    assert await counters.reserve("next", [KEY], 100, now=at(900)) is None  # the whole budget is free again
    assert await counters.get_budget(KEY, now=at(900)) == (0, 100)


async def test_memory_lapsed_hold_is_forgotten_after_the_settle_grace() -> None:
    """(Redis forgets it by the hold record's TTL, on its own clock.)"""
    counters = MemoryCounters(reservation_ttl_s=1)
    assert await counters.reserve("r1", [KEY], 60, now=NOW) is None
    assert await counters.reserve("r2", [KEY], 10, now=NOW) is None
    assert await counters.get_budget(KEY, now=at(SETTLE_GRACE_S)) == (0, 0)  # lapsed, both still settleable
    await counters.settle("r2", 10, now=at(SETTLE_GRACE_S))

    assert await counters.get_budget(KEY, now=at(1 + SETTLE_GRACE_S)) == (10, 0)  # r1 forgotten now
    await counters.settle("r1", 40, now=at(1 + SETTLE_GRACE_S))

    assert await counters.get_budget(KEY, now=NOW) == (10, 0)


@pytest.mark.parametrize("amount", [-1, MAX_AMOUNT + 1])
async def test_amounts_outside_zero_to_two_pow_53_are_refused(counters: Counters, amount: int) -> None:
    with pytest.raises(
        ValueError, match=rf"^Budget amounts are nano-dollars in \[0, 9007199254740992\]; got {amount}\.$"
    ):
        await counters.reserve("r1", [KEY], amount, now=NOW)
    assert await counters.reserve("r1", [KEY], 10, now=NOW) is None
    with pytest.raises(ValueError, match="nano-dollars"):
        await counters.settle("r1", amount, now=NOW)
    assert await counters.get_budget(KEY, now=NOW) == (0, 10)  # the refused settle changed nothing


async def test_limit_of_two_pow_53_refuses_one_over_exactly(counters: Counters) -> None:
    scope = BudgetScope("key:k1", MAX_AMOUNT, "total")
    assert await counters.reserve("r1", [scope], MAX_AMOUNT, now=NOW) is None
    await counters.settle("r1", MAX_AMOUNT - 1, now=NOW)
    assert await counters.get_budget(scope, now=NOW) == (MAX_AMOUNT - 1, 0)
    assert await counters.reserve("r2", [scope], 1, now=NOW) is None
    assert await counters.reserve("r3", [scope], 1, now=NOW) == BudgetRefusal(scope, MAX_AMOUNT - 1, 1, 1)


async def test_redis_budget_keys_carry_scope_period_and_ttl(redis_client: Redis, redis_prefix: str) -> None:
    counters = RedisCounters(redis_client, prefix=redis_prefix)
    monthly, total = BudgetScope("key:abc", 100, "monthly"), BudgetScope("team:t", 100, "total")
    assert await counters.reserve("r1", [monthly, total], 10, now=NOW) is None
    await counters.settle("r1", 7, now=NOW)

    start = int(datetime(2026, 5, 1, tzinfo=UTC).timestamp())
    assert await redis_client.get(f"{redis_prefix}budget:key:abc:monthly:{start}:spent") == b"7"
    assert await redis_client.get(f"{redis_prefix}budget:team:t:total:0:spent") == b"7"
    # Kept until June 1st plus a day of margin, counted from the `now` passed to settle.
    expected_ttl = (datetime(2026, 6, 2, tzinfo=UTC) - NOW).total_seconds()
    ttl = await redis_client.ttl(f"{redis_prefix}budget:key:abc:monthly:{start}:spent")
    assert expected_ttl - 5 <= ttl <= expected_ttl
    assert await redis_client.ttl(f"{redis_prefix}budget:team:t:total:0:spent") == -1  # total: never expires
    assert not await redis_client.exists(f"{redis_prefix}hold:r1")


@pytest.mark.parametrize(
    ("period", "key_end"),
    [
        ("daily", datetime(2026, 5, 14, tzinfo=UTC)),
        ("weekly", datetime(2026, 5, 18, tzinfo=UTC)),  # NOW is a Wednesday: the week ends on Monday
    ],
)
async def test_redis_daily_and_weekly_keys_expire_a_margin_after_their_period(
    redis_client: Redis, redis_prefix: str, period: Period, key_end: datetime
) -> None:
    counters = RedisCounters(redis_client, prefix=redis_prefix)
    scope = BudgetScope("key:abc", 100, period)
    assert await counters.reserve("r1", [scope], 10, now=NOW) is None
    await counters.settle("r1", 7, now=NOW)

    start = int(period_start(period, NOW).timestamp())
    expected_ttl = (key_end - NOW).total_seconds() + PERIOD_MARGIN_S
    ttl = await redis_client.ttl(f"{redis_prefix}budget:key:abc:{period}:{start}:spent")
    assert expected_ttl - 5 <= ttl <= expected_ttl


@pytest.mark.parametrize(
    ("period", "booked_at", "kept_until"),
    [
        ("daily", datetime(2026, 5, 13, 12, tzinfo=UTC), datetime(2026, 5, 15, tzinfo=UTC)),
        ("weekly", datetime(2026, 5, 13, 12, tzinfo=UTC), datetime(2026, 5, 19, tzinfo=UTC)),
        ("monthly", datetime(2026, 5, 13, 12, tzinfo=UTC), datetime(2026, 6, 2, tzinfo=UTC)),
    ],
)
async def test_memory_finished_period_stays_readable_for_the_margin_then_goes(
    period: Period, booked_at: datetime, kept_until: datetime
) -> None:
    """Like the Redis TTLs: a finished period's counters are dropped PERIOD_MARGIN_S after it ends, when a new
    period's counter appears, at most once an hour; a period still holding a reservation is kept."""
    counters = MemoryCounters(reservation_ttl_s=60 * 86_400)
    scope, other = BudgetScope("key:k1", 100, period), BudgetScope("key:k2", 100, period)
    assert await counters.reserve("r1", [scope], 30, now=booked_at) is None
    await counters.settle("r1", 30, now=booked_at)
    assert await counters.reserve("held", [other], 5, now=booked_at) is None  # still held when the sweep runs

    assert await counters.reserve("r2", [BudgetScope("key:k3", 1, period)], 1, now=kept_until) is None
    assert await counters.get_budget(scope, now=booked_at) == (30, 0)  # exactly at the margin: still there
    fresh = MemoryCounters()
    assert await fresh.reserve("r1", [scope], 30, now=booked_at) is None
    await fresh.settle("r1", 30, now=booked_at)
    second_after = kept_until + timedelta(seconds=1)
    assert await fresh.reserve("r2", [BudgetScope("key:k3", 1, period)], 1, now=second_after) is None
    assert await fresh.get_budget(scope, now=booked_at) == (0, 0)  # a second past the margin: gone
    almost = kept_until + timedelta(seconds=3599)
    assert await counters.reserve("r3", [BudgetScope("key:k4", 1, period)], 1, now=almost) is None
    assert await counters.get_budget(scope, now=booked_at) == (30, 0)  # the last sweep ran under an hour ago

    hour_later = kept_until + timedelta(hours=1)
    assert await counters.reserve("r4", [BudgetScope("key:k5", 1, period)], 1, now=hour_later) is None
    assert await counters.get_budget(scope, now=booked_at) == (0, 0)
    assert await counters.get_budget(other, now=booked_at) == (0, 5)


@pytest.mark.parametrize("ttl", [0, -1, 86_401])
def test_redis_reservation_ttl_outside_a_day_is_refused(redis_client: Redis, ttl: float) -> None:
    with pytest.raises(ValueError, match=rf"^reservation_ttl_s must be in \(0, 86400\]; got {ttl}\.$"):
        RedisCounters(redis_client, reservation_ttl_s=ttl)


async def test_redis_hold_record_outlives_its_hold_by_the_settle_grace(redis_client: Redis, redis_prefix: str) -> None:
    counters = RedisCounters(redis_client, prefix=redis_prefix, reservation_ttl_s=86_400)  # the longest allowed
    assert await counters.reserve("r1", [KEY], 10, now=NOW) is None
    ttl = await redis_client.ttl(f"{redis_prefix}hold:r1")
    assert 2 * 86_400 - 5 <= ttl <= 2 * 86_400  # the hold's TTL plus a day in which a late settle still books


async def test_redis_seed_of_a_past_period_lands_for_at_least_the_margin(
    redis_client: Redis, redis_prefix: str
) -> None:
    counters = RedisCounters(redis_client, prefix=redis_prefix)
    start = datetime(2020, 1, 1, tzinfo=UTC)
    await counters.seed_spent("key:old", "daily", start, 5)
    ttl = await redis_client.ttl(f"{redis_prefix}budget:key:old:daily:{int(start.timestamp())}:spent")
    assert 86_400 - 5 <= ttl <= 86_400


async def test_redis_from_url_owns_its_pool_and_close_leaves_a_given_client_open(redis_client: Redis) -> None:
    counters = await RedisCounters.from_url(REDIS_URL)
    pool = counters.client.connection_pool
    assert (pool.max_connections, pool.timeout, counters.reservation_ttl_s) == (64, 5, 900)  # waits, not fails
    await counters.close()

    await RedisCounters(redis_client).close()  # a client passed in belongs to the caller
    assert await redis_client.ping()


async def test_redis_from_url_unreachable_raises_connection_error() -> None:
    with pytest.raises(RedisConnectionError):
        await RedisCounters.from_url("redis://127.0.0.1:1/0")


async def test_seed_spent_then_reserve_respects_it(counters: Counters) -> None:
    await counters.seed_spent(KEY.name, KEY.period, period_start(KEY.period, NOW), 90)

    assert await counters.reserve("r1", [KEY], 11, now=NOW) == BudgetRefusal(KEY, 90, 0, 11)
    assert await counters.reserve("r2", [KEY], 10, now=NOW) is None


async def test_memory_seed_spent_sets_counter() -> None:
    counters = MemoryCounters()
    await counters.seed_spent(KEY.name, KEY.period, NOW, 50)
    await counters.seed_spent(KEY.name, KEY.period, NOW, 80)
    assert await counters.get_budget(KEY, now=NOW) == (80, 0)


async def test_redis_seed_spent_keeps_existing_counter(redis_client: Redis, redis_prefix: str) -> None:
    counters = RedisCounters(redis_client, prefix=redis_prefix)
    assert await counters.reserve("r1", [KEY], 30, now=NOW) is None
    await counters.settle("r1", 30, now=NOW)  # another instance is already counting

    await counters.seed_spent(KEY.name, KEY.period, period_start(KEY.period, NOW), 80)

    assert await counters.get_budget(KEY, now=NOW) == (30, 0)


async def test_rate_rpm_refuses_fourth_until_oldest_leaves_window(counters: Counters) -> None:
    scope = RateScope("key:k1", rpm=3, tpm=None)
    remaining = []
    for i, t in enumerate([0, 10, 20]):
        decision = await counters.check_rate(f"r{i}", [scope], 5, now=at(t))
        assert decision.allowed
        remaining.append(decision.remaining_requests)
    assert remaining == [2, 1, 0]

    refused = await counters.check_rate("r3", [scope], 5, now=at(30))
    assert (refused.allowed, refused.scope, refused.limit_requests, refused.remaining_requests) == (False, scope, 3, 0)
    assert refused.retry_after_s == pytest.approx(30)
    assert refused.reset_requests_s == pytest.approx(30)
    assert refused.limit_tokens is None

    assert not (await counters.check_rate("r4", [scope], 5, now=at(59.9))).allowed
    fits = await counters.check_rate("r5", [scope], 5, now=at(60))  # r0 (t=0) has left [t-60, t]
    assert (fits.allowed, fits.remaining_requests) == (True, 0)
    assert fits.reset_requests_s == pytest.approx(10)  # r1 leaves at 70
    assert (fits.limit_tokens, fits.remaining_tokens, fits.reset_tokens_s) == (None, None, None)  # no tpm


async def test_rate_tpm_counts_estimates_then_actual_tokens(counters: Counters) -> None:
    scope = RateScope("key:k1", rpm=None, tpm=1000)
    first = await counters.check_rate("r1", [scope], 600, now=NOW)
    assert (first.allowed, first.limit_tokens, first.remaining_tokens, first.limit_requests) == (True, 1000, 400, None)
    assert (first.remaining_requests, first.reset_requests_s) == (None, None)  # no rpm: no request headers

    refused = await counters.check_rate("r2", [scope], 600, now=at(15))
    assert (refused.allowed, refused.remaining_tokens) == (False, 400)
    assert refused.retry_after_s == pytest.approx(45)

    await counters.adjust_tokens("r1", [scope], 100, now=at(16))
    allowed = await counters.check_rate("r3", [scope], 600, now=at(17))
    assert (allowed.allowed, allowed.remaining_tokens) == (True, 300)
    assert allowed.reset_tokens_s == pytest.approx(43)

    too_big = await counters.check_rate("r4", [scope], 1001, now=at(18))
    assert (too_big.allowed, too_big.retry_after_s) == (False, None)  # can never fit


async def test_rate_tpm_retry_after_waits_for_enough_tokens_to_leave(counters: Counters) -> None:
    scope = RateScope("key:k1", rpm=100, tpm=1000)
    for i, (t, tokens) in enumerate([(0, 100), (10, 300), (20, 500)]):
        assert (await counters.check_rate(f"r{i}", [scope], tokens, now=at(t))).allowed

    refused = await counters.check_rate("r9", [scope], 500, now=at(30))  # needs 400 freed: r0 and r1 leave

    assert refused.retry_after_s == pytest.approx(40)
    assert (refused.remaining_requests, refused.remaining_tokens) == (97, 100)


@pytest.mark.parametrize(
    ("recorded", "asked_at", "tokens", "retry_after"),
    [
        ([(0, 100), (10, 300)], 20, 701, 50),  # needs 101 freed: the first request's 100 is one short
        ([(0, 100), (10, 300)], 20, 700, 40),  # needs exactly the first request's 100
        ([(0, 1000)], 59.5, 1, 0.5),  # under a second: reported as it is, not rounded up
        ([(0, 100)], 10, 1000, 50),  # exactly the whole tpm: fits once the window is empty
    ],
)
async def test_rate_tpm_retry_after_is_when_just_enough_tokens_have_left(
    counters: Counters, recorded: list[tuple[float, int]], asked_at: float, tokens: int, retry_after: float
) -> None:
    scope = RateScope("key:k1", rpm=None, tpm=1000)
    for i, (t, used) in enumerate(recorded):
        assert (await counters.check_rate(f"r{i}", [scope], used, now=at(t))).allowed

    refused = await counters.check_rate("late", [scope], tokens, now=at(asked_at))

    assert (refused.allowed, refused.retry_after_s) == (False, pytest.approx(retry_after))


async def test_rate_refused_by_team_records_nothing_and_headers_pick_tightest(counters: Counters) -> None:
    key, team = RateScope("key:k1", rpm=10, tpm=10_000), RateScope("team:t1", rpm=2, tpm=None)
    other_key = RateScope("key:k2", rpm=10, tpm=None)
    assert (await counters.check_rate("o1", [other_key, team], 1, now=NOW)).allowed

    mine = await counters.check_rate("m1", [key, team], 100, now=at(1))
    assert (mine.allowed, mine.limit_requests, mine.remaining_requests) == (True, 2, 0)  # the team binds
    assert (mine.limit_tokens, mine.remaining_tokens) == (10_000, 9_900)  # only the key limits tokens

    refused = await counters.check_rate("m2", [key, team], 100, now=at(2))
    assert (refused.allowed, refused.scope) == (False, team)
    assert refused.retry_after_s == pytest.approx(58)

    alone = await counters.check_rate("m3", [key], 100, now=at(3))  # m2 was not recorded on the key
    assert (alone.remaining_requests, alone.remaining_tokens) == (8, 9_800)


async def test_rate_rpm_zero_refuses_every_request_for_good(counters: Counters) -> None:
    scope = RateScope("key:k1", rpm=0, tpm=None)
    refused = await counters.check_rate("r1", [scope], 1, now=NOW)
    assert (refused.allowed, refused.scope, refused.retry_after_s) == (False, scope, None)
    assert (refused.limit_requests, refused.remaining_requests, refused.reset_requests_s) == (0, 0, 0.0)


async def test_rate_tpm_zero_refuses_every_request_with_tokens_for_good(counters: Counters) -> None:
    scope = RateScope("key:k1", rpm=None, tpm=0)
    refused = await counters.check_rate("r1", [scope], 1, now=NOW)
    assert (refused.allowed, refused.retry_after_s, refused.limit_tokens, refused.remaining_tokens) == (
        False,
        None,
        0,
        0,
    )


async def test_rate_tpm_boundary_exactly_full_allowed_one_more_token_refused(counters: Counters) -> None:
    scope = RateScope("key:k1", rpm=None, tpm=1000)
    assert (await counters.check_rate("r1", [scope], 400, now=NOW)).allowed
    full = await counters.check_rate("r2", [scope], 600, now=at(1))
    assert (full.allowed, full.remaining_tokens) == (True, 0)
    refused = await counters.check_rate("r3", [scope], 1, now=at(2))
    assert (refused.allowed, refused.remaining_tokens, refused.retry_after_s) == (False, 0, pytest.approx(58))
    assert (await counters.check_rate("r4", [scope], 1, now=at(60))).allowed  # r1 left: 400 free again


async def test_rate_remaining_tokens_never_negative_when_actuals_exceed_the_limit(counters: Counters) -> None:
    scope = RateScope("key:k1", rpm=10, tpm=1000)
    assert (await counters.check_rate("r1", [scope], 100, now=NOW)).allowed
    await counters.adjust_tokens("r1", [scope], 1500, now=at(1))  # the answer was longer than estimated

    refused = await counters.check_rate("r2", [scope], 1, now=at(2))

    assert (refused.allowed, refused.remaining_tokens, refused.remaining_requests) == (False, 0, 9)
    assert refused.retry_after_s == pytest.approx(58)


async def test_rate_three_scopes_admit_together_and_headers_pick_the_tightest(counters: Counters) -> None:
    scopes = [
        RateScope("key:k1", rpm=10, tpm=None),
        RateScope("team:t1", rpm=5, tpm=None),
        RateScope("model:m1", rpm=None, tpm=1000),
    ]
    assert (await counters.check_rate("r1", scopes, 100, now=NOW)).allowed
    second = await counters.check_rate("r2", scopes, 100, now=at(1))
    assert (second.allowed, second.limit_requests, second.remaining_requests) == (True, 5, 3)
    assert (second.limit_tokens, second.remaining_tokens) == (1000, 800)


async def test_rate_refused_by_two_scopes_names_the_one_that_binds_longest(counters: Counters) -> None:
    key, team = RateScope("key:k1", rpm=1, tpm=None), RateScope("team:t1", rpm=2, tpm=None)
    assert (await counters.check_rate("r1", [team], 1, now=NOW)).allowed  # the team's oldest leaves at 60
    assert (await counters.check_rate("r2", [key, team], 1, now=at(20))).allowed  # the key's leaves at 80

    refused = await counters.check_rate("r3", [team, key], 1, now=at(30))  # team: 30 s to wait; key: 50 s

    assert (refused.allowed, refused.scope, refused.retry_after_s) == (False, key, pytest.approx(50))


async def test_rate_lowered_limit_reports_zero_remaining_not_negative(counters: Counters) -> None:
    for i in range(3):
        assert (await counters.check_rate(f"r{i}", [RateScope("key:k1", rpm=10, tpm=None)], 1, now=at(i))).allowed
    lowered = RateScope("key:k1", rpm=2, tpm=None)  # the operator lowered the key's rpm meanwhile

    refused = await counters.check_rate("r9", [lowered], 1, now=at(5))

    assert (refused.allowed, refused.limit_requests, refused.remaining_requests) == (False, 2, 0)


async def test_rate_scopes_without_limits_allow_everything(counters: Counters) -> None:
    decision = await counters.check_rate("r1", [RateScope("key:k1", rpm=None, tpm=None)], 10**6, now=NOW)
    assert decision.allowed
    assert (decision.scope, decision.limit_requests, decision.limit_tokens, decision.retry_after_s) == (
        None,
        None,
        None,
        None,
    )


async def test_rate_reused_request_id_counts_as_another_request(counters: Counters) -> None:
    scope = RateScope("key:k1", rpm=2, tpm=1000)
    assert (await counters.check_rate("dup", [scope], 100, now=NOW)).allowed
    assert (await counters.check_rate("dup", [scope], 200, now=at(10))).allowed
    assert not (await counters.check_rate("dup", [scope], 1, now=at(20))).allowed

    await counters.adjust_tokens("dup", [scope], 50, now=at(30))  # the first one recorded
    assert (await counters.check_rate("other", [scope], 1, now=at(40))).remaining_tokens == 1000 - 50 - 200
    after_first_left = await counters.check_rate("dup", [scope], 1, now=at(60))

    assert (after_first_left.allowed, after_first_left.remaining_requests) == (True, 0)
    assert after_first_left.remaining_tokens == 1000 - 200 - 1


async def test_memory_rate_window_stays_exact_and_small_over_two_minutes_of_busy_traffic() -> None:
    """12,000 requests at 100/s: every decision matches a brute-force count of the last 60 s (tokens corrected
    after each call, as the pipeline does), and the window holds 16 bytes a request, not an object."""
    counters, scope = MemoryCounters(), RateScope("key:busy", rpm=20_000, tpm=10**9)
    log: list[tuple[float, int]] = []  # (time, tokens) of recorded requests
    tracemalloc.start()
    for i in range(12_000):
        t = i * 0.01
        decision = await counters.check_rate(f"req-{i}", [scope], 100, now=at(t))
        assert decision.allowed
        log.append((t, 100))
        await counters.adjust_tokens(f"req-{i}", [scope], i % 7, now=at(t))
        log[-1] = (t, i % 7)
        if i % 997 == 0:
            live = [tokens for ts, tokens in log if ts > t - 60]
            assert decision.remaining_requests == scope.rpm - len(live)
            assert decision.remaining_tokens == scope.tpm - sum(live[:-1]) - 100  # before this call's correction
    in_counters = tracemalloc.Filter(True, counters_memory.__file__)
    held = sum(stat.size for stat in tracemalloc.take_snapshot().filter_traces([in_counters]).statistics("filename"))
    tracemalloc.stop()
    assert held < 6_000 * 16 * 3  # the last minute's 6,000 requests (array growth leaves spare room)


async def test_memory_rate_window_compaction_keeps_open_requests_adjustable() -> None:
    """Requests that leave the window unsettled are forgotten oldest first; once most of the arrays are behind
    the window they are compacted, and a request still open is then corrected in place."""
    counters, scope = MemoryCounters(), RateScope("key:k1", rpm=10_000, tpm=10**9)
    for i in range(5_000):  # never settled (their calls failed, say)
        assert (await counters.check_rate(f"old-{i}", [scope], 10, now=at(i * 0.01))).allowed
    assert (await counters.check_rate("open", [scope], 100, now=at(50))).allowed
    assert (await counters.check_rate("probe", [scope], 1, now=at(70))).allowed  # old-0..old-1000 leave
    assert (await counters.check_rate("probe2", [scope], 1, now=at(105))).allowed  # 4,501 behind: compacted

    await counters.adjust_tokens("open", [scope], 7, now=at(106))
    await counters.adjust_tokens("old-4000", [scope], 10**6, now=at(106))  # left the window: ignored
    final = await counters.check_rate("last", [scope], 1, now=at(107.005))

    live_old = sum(1 for i in range(5_000) if i * 0.01 > 47.005)
    assert (final.remaining_requests, final.remaining_tokens) == (
        10_000 - live_old - 4,
        10**9 - 10 * live_old - 7 - 3,
    )


async def test_adjusting_tokens_of_a_scope_never_checked_changes_nothing(counters: Counters) -> None:
    scope = RateScope("key:k1", rpm=5, tpm=100)
    await counters.adjust_tokens("r1", [scope], 50, now=NOW)
    decision = await counters.check_rate("r2", [scope], 100, now=at(1))
    assert (decision.allowed, decision.remaining_requests, decision.remaining_tokens) == (True, 4, 0)
