"""Budget reservations and periods in both counter stores (gateway.limits.counters_memory and counters_redis)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta, timezone

import pytest
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError

from gateway.limits.counters import (
    BudgetRefusal,
    BudgetScope,
    Counters,
    Period,
    period_start,
)
from gateway.limits.counters_memory import MemoryCounters
from gateway.limits.counters_redis import RedisCounters
from tests.limits.conftest import (
    KEY,
    KEY_500,
    MAX_AMOUNT,
    NOW,
    PERIOD_MARGIN_S,
    REDIS_URL,
    SETTLE_GRACE_S,
    TEAM,
    MakeCounters,
    at,
)


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
