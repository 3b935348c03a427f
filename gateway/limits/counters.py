"""Budget reservations and sliding-window rate counters: the shared types, the Counters protocol, period arithmetic.

Budgets are reservations (DESIGN.md §5): `reserve` holds the worst-case cost on every scope that applies, all or
nothing, refusing when `spent + reserved + amount > limit` on any scope; `settle` releases the hold and books the
actual cost; `release` frees it. A hold that is never settled (its process crashed) lapses after
`reservation_ttl_s`; a settle that arrives later still books its cost. Cost is booked in the period the reservation
was made in, because that is the period whose limit admitted it, so `spent` never passes a limit while actual costs
stay within their estimates.

Rate limits use an exact sliding window of `WINDOW_S` seconds: a request recorded at `t` counts, with its tokens,
for every check at a time in `[t, t + WINDOW_S)`.

Amounts are integer nano-dollars (1 USD = 1_000_000_000). Every time is the `now` the caller passes (timezone-aware).
`gateway.limits.counters_memory.MemoryCounters` serves one process; `counters_redis.RedisCounters` several.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from typing import NamedTuple, Protocol

from gateway.calls.caller import BudgetScope, Period, RateScope

NANODOLLARS_PER_USD = 1_000_000_000
MAX_AMOUNT = 2**53  # Redis Lua compares in doubles: exact up to here (about 9 million USD)
WINDOW_S = 60
PERIOD_MARGIN_S = 86_400  # a finished period's counters stay readable this long
SETTLE_GRACE_S = 86_400  # a lapsed reservation can still be settled (its cost booked) this long

_DAY_S = 86_400
_EPOCH = date(1970, 1, 1)


def period_start(period: Period, now: datetime) -> datetime:
    """The UTC start of the period holding `now`; `total` starts at the Unix epoch. Raises ValueError if naive."""
    return datetime.fromtimestamp(period_start_ts(period, timestamp(now)), UTC)


def timestamp(now: datetime) -> float:
    """Seconds since the epoch; raises ValueError for a naive datetime (it would silently mean local time)."""
    if now.tzinfo is None:
        raise ValueError("Counters need a timezone-aware datetime; pass datetime.now(UTC).")
    return now.timestamp()


def period_start_ts(period: Period, ts: float) -> int:
    """Epoch seconds of the start of the UTC calendar period holding `ts` (weeks start on Monday)."""
    if period == "daily":
        return int(ts // _DAY_S) * _DAY_S
    if period == "weekly":
        day = int(ts // _DAY_S)
        return (day - (day + 3) % 7) * _DAY_S  # 1970-01-01 was a Thursday
    if period == "monthly":
        return _month_start(int(ts // _DAY_S))
    if period == "total":
        return 0
    raise ValueError(f"Unknown budget period {period!r}; expected daily, weekly, monthly or total.")


def period_end_ts(period: Period, start: int) -> int | None:
    """Epoch seconds at which the period beginning at `start` ends; None for `total`."""
    if period == "daily":
        return start + _DAY_S
    if period == "weekly":
        return start + 7 * _DAY_S
    if period == "monthly":
        return _month_start(start // _DAY_S + 31)
    return None


@lru_cache(maxsize=128)
def _month_start(day: int) -> int:
    first = (_EPOCH + timedelta(days=day)).replace(day=1)
    return (first - _EPOCH).days * _DAY_S


@dataclass(frozen=True, slots=True)
class BudgetRefusal:
    """Why `reserve` refused: the first scope that could not hold `amount`, and its counters at that moment."""

    scope: BudgetScope
    spent: int
    reserved: int
    amount: int


class RateDecision(NamedTuple):
    """A rate check's outcome plus OpenAI-style `x-ratelimit-*` values for the tightest scope (a NamedTuple: one
    per request, and a frozen dataclass of nine fields took twice as long to build).

    `reset_*_s` is the time until the oldest request in that scope's window leaves it (when `remaining` next grows).
    When refused, `scope` is the scope that binds longest and `retry_after_s` the time until the request would fit,
    or None if it never can (rpm 0, or more tokens than the tpm).
    """

    allowed: bool
    scope: RateScope | None
    limit_requests: int | None
    remaining_requests: int | None
    reset_requests_s: float | None
    limit_tokens: int | None
    remaining_tokens: int | None
    reset_tokens_s: float | None
    retry_after_s: float | None


class WindowState(NamedTuple):
    """One scope's window as a store saw it: after recording when allowed, before (unchanged) when refused."""

    scope: RateScope
    count: int
    tokens: int
    oldest_ts: float | None
    wait_s: float | None  # None: this scope admits the request; math.inf: never


def rate_decision(windows: Sequence[WindowState], now_ts: float) -> RateDecision:
    """Builds the decision and its header values from every scope's window (shared by both stores)."""
    if len(windows) == 1 and windows[0].wait_s is None:  # one scope (most keys), admitted: the same, faster
        return _decision(True, None, windows[0], windows[0], now_ts, None)
    refused = [w for w in windows if w.wait_s is not None]
    if refused:
        binding = max(refused, key=lambda w: w.wait_s or 0.0)
        wait = binding.wait_s if binding.wait_s != math.inf else None
        return _decision(False, binding.scope, binding, binding, now_ts, wait)
    by_requests = min((w for w in windows if w.scope.rpm is not None), key=_requests_left, default=None)
    by_tokens = min((w for w in windows if w.scope.tpm is not None), key=_tokens_left, default=None)
    return _decision(True, None, by_requests, by_tokens, now_ts, None)


def _requests_left(w: WindowState) -> int:
    return max((w.scope.rpm or 0) - w.count, 0)


def _tokens_left(w: WindowState) -> int:
    return max((w.scope.tpm or 0) - w.tokens, 0)


def _reset(w: WindowState, now_ts: float) -> float:
    return 0.0 if w.oldest_ts is None else max(w.oldest_ts + WINDOW_S - now_ts, 0.0)


def _decision(
    allowed: bool,
    scope: RateScope | None,
    req: WindowState | None,
    tok: WindowState | None,
    now_ts: float,
    retry_after_s: float | None,
) -> RateDecision:
    req = req if req is not None and req.scope.rpm is not None else None
    tok = tok if tok is not None and tok.scope.tpm is not None else None
    return RateDecision(
        allowed,
        scope,
        req.scope.rpm if req else None,
        _requests_left(req) if req else None,
        _reset(req, now_ts) if req else None,
        tok.scope.tpm if tok else None,
        _tokens_left(tok) if tok else None,
        _reset(tok, now_ts) if tok else None,
        retry_after_s,
    )


class Counters(Protocol):
    async def reserve(
        self, request_id: str, scopes: Sequence[BudgetScope], amount: int, *, now: datetime
    ) -> BudgetRefusal | None:
        """Holds `amount` on every scope, or on none and returns the refusal. Raises ValueError for a request id
        that already holds a reservation or an amount outside [0, MAX_AMOUNT]."""
        ...

    async def settle(self, request_id: str, actual: int, *, now: datetime) -> None:
        """Releases the hold and books `actual` (in full, even above the hold) in the reservation's period; unknown
        or finished ids are a no-op. Raises ValueError for an amount outside [0, MAX_AMOUNT]."""
        ...

    async def release(self, request_id: str) -> None:
        """Frees the hold without booking anything; unknown or finished ids are a no-op."""
        ...

    async def get_budget(self, scope: BudgetScope, *, now: datetime) -> tuple[int, int]:
        """(spent, reserved) in the period holding `now`."""
        ...

    async def seed_spent(self, scope_name: str, period: Period, start: datetime, amount: int) -> None:
        """Sets spent for the period starting at `start` (from the database at startup); Redis keeps an existing
        counter, since another instance is already counting."""
        ...

    async def check_rate(
        self, request_id: str, scopes: Sequence[RateScope], tokens: int, *, now: datetime
    ) -> RateDecision:
        """Admits one request estimated at `tokens` if every scope has `count < rpm` and `used + tokens <= tpm`,
        recording it in every window (all or nothing). A reused `request_id` still counts as another request."""
        ...

    async def adjust_tokens(
        self, request_id: str, scopes: Sequence[RateScope], actual_tokens: int, *, now: datetime
    ) -> None:
        """Replaces the token estimate recorded for `request_id` (its first use) by the actual count, if still in
        the window."""
        ...

    async def close(self) -> None: ...


def check_amount(amount: int) -> None:
    if not 0 <= amount <= MAX_AMOUNT:
        raise ValueError(f"Budget amounts are nano-dollars in [0, {MAX_AMOUNT}]; got {amount}.")
