"""Sliding-window rate limits (RPM, TPM) in both counter stores (gateway.limits.counters_memory and counters_redis)."""

from __future__ import annotations

import tracemalloc

import pytest
from redis.asyncio import Redis

from gateway.limits import counters_memory
from gateway.limits.counters import (
    Counters,
    RateScope,
    period_start,
)
from gateway.limits.counters_memory import MemoryCounters
from gateway.limits.counters_redis import RedisCounters
from tests.limits.conftest import (
    KEY,
    NOW,
    at,
)


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
