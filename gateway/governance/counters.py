"""Budget reservations and sliding-window rate counters: the shared types, period arithmetic and the memory store.

Budgets are reservations (DESIGN.md §5): `reserve` holds the worst-case cost on every scope that applies, all or
nothing, refusing when `spent + reserved + amount > limit` on any scope; `settle` releases the hold and books the
actual cost; `release` frees it. A hold that is never settled (its process crashed) lapses after
`reservation_ttl_s`; a settle that arrives later still books its cost. Cost is booked in the period the reservation
was made in, because that is the period whose limit admitted it, so `spent` never passes a limit while actual costs
stay within their estimates.

Rate limits use an exact sliding window of `WINDOW_S` seconds: a request recorded at `t` counts, with its tokens,
for every check at a time in `[t, t + WINDOW_S)`.

Amounts are integer nano-dollars (1 USD = 1_000_000_000). Every time is the `now` the caller passes (timezone-aware).
`MemoryCounters` serves one process; `gateway.governance.counters_redis.RedisCounters` serves several.
"""

from __future__ import annotations

import math
from array import array
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from typing import Literal, NamedTuple, Protocol

Period = Literal["daily", "weekly", "monthly", "total"]

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
class BudgetScope:
    name: str  # "key:<id>" or "team:<id>"
    limit: int  # nano-dollars
    period: Period


@dataclass(frozen=True, slots=True)
class BudgetRefusal:
    """Why `reserve` refused: the first scope that could not hold `amount`, and its counters at that moment."""

    scope: BudgetScope
    spent: int
    reserved: int
    amount: int


@dataclass(frozen=True, slots=True)
class RateScope:
    name: str  # "key:<id>" or "team:<id>"
    rpm: int | None
    tpm: int | None


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


@dataclass(slots=True)
class _Slot:
    """One scope's counters for one period."""

    end_ts: float
    spent: int = 0
    reserved: int = 0


@dataclass(slots=True)
class _Hold:
    amount: int
    slots: list[_Slot]
    deadline_ts: float  # when held: lapses then; when lapsed: forgotten then


class _Window:
    """One rate scope's requests, oldest first: their times and tokens in two flat arrays, and their token total.

    Flat arrays because a busy key records every request of the last minute: at 3,000 requests/s an object, a
    float, an int and an id-keyed dict entry per request held ~40 MB; 16 bytes per request hold 2.9 MB.
    Positions are absolute (`base` counts the entries compacted away), so `open` can name a request's entry
    while the arrays shift. `open` keeps, in insertion order, the requests whose tokens `adjust_tokens` may
    still correct (the estimate, until the answer's usage settles it), and loses them once they are settled or
    have left the window: it holds the calls in flight, not the minute.
    """

    __slots__ = ("times", "counts", "head", "base", "tokens", "open")
    _COMPACT_AT = 4096  # entries left behind before the arrays are shifted (amortised O(1) per request)

    def __init__(self) -> None:
        self.times = array("d")
        self.counts = array("q")
        self.head = 0  # index of the oldest entry still in the window
        self.base = 0
        self.tokens = 0
        self.open: OrderedDict[str, int] = OrderedDict()  # a reused id keeps its first entry here, as in Redis

    def __len__(self) -> int:
        return len(self.times) - self.head

    def oldest_ts(self) -> float | None:
        return self.times[self.head] if self.head < len(self.times) else None

    def record(self, request_id: str, ts: float, tokens: int) -> None:
        self.open.setdefault(request_id, self.base + len(self.times))
        self.times.append(ts)
        self.counts.append(tokens)
        self.tokens += tokens

    def adjust(self, request_id: str, tokens: int) -> None:
        position = self.open.pop(request_id, None)
        if position is not None and position >= self.base + self.head:
            index = position - self.base
            self.tokens += tokens - self.counts[index]
            self.counts[index] = tokens

    def prune(self, ts: float) -> None:
        cutoff, times, counts, head = ts - WINDOW_S, self.times, self.counts, self.head
        while head < len(times) and times[head] <= cutoff:
            self.tokens -= counts[head]
            head += 1
        self.head = head
        oldest, open_ = self.base + head, self.open
        while open_ and next(iter(open_.values())) < oldest:
            open_.popitem(last=False)
        if head >= self._COMPACT_AT and head * 2 >= len(times):
            del times[:head], counts[:head]
            self.base += head
            self.head = 0

    def wait_s(self, rpm: int | None, tpm: int | None, tokens: int, ts: float) -> float | None:
        """None if the request fits now, else seconds until it would (math.inf: never)."""
        wait: float | None = None
        times = self.times
        if rpm is not None and len(self) >= rpm:
            if rpm == 0:
                return math.inf
            wait = times[len(times) - rpm] + WINDOW_S - ts
        if tpm is not None and self.tokens + tokens > tpm:
            if tokens > tpm:
                return math.inf
            need, freed, counts = self.tokens + tokens - tpm, 0, self.counts
            for index in range(self.head, len(times)):
                freed += counts[index]
                if freed >= need:
                    wait = max(wait or 0.0, times[index] + WINDOW_S - ts)
                    break
        return wait


class MemoryCounters:
    """Counters for a single process: plain dicts, no awaits inside an operation, so asyncio needs no lock."""

    def __init__(self, *, reservation_ttl_s: float = 900) -> None:
        self.reservation_ttl_s = reservation_ttl_s
        self._slots: dict[tuple[str, str, int], _Slot] = {}
        # Both in deadline order (the TTL is fixed), so lapsing only ever looks at the front.
        self._holds: OrderedDict[str, _Hold] = OrderedDict()
        self._lapsed: OrderedDict[str, _Hold] = OrderedDict()  # settle still books these, reserve no longer counts
        self._windows: dict[str, _Window] = {}
        self._next_sweep_ts = 0.0

    async def reserve(
        self, request_id: str, scopes: Sequence[BudgetScope], amount: int, *, now: datetime
    ) -> BudgetRefusal | None:
        ts = timestamp(now)
        check_amount(amount)
        self._lapse(ts)
        if request_id in self._holds or request_id in self._lapsed:
            raise ValueError(f"Request {request_id!r} already holds a reservation.")
        if not scopes:
            return None
        slots = []
        for scope in scopes:
            slot = self._slot(scope.name, scope.period, ts)
            if slot.spent + slot.reserved + amount > scope.limit:
                return BudgetRefusal(scope, slot.spent, slot.reserved, amount)
            slots.append(slot)
        for slot in slots:
            slot.reserved += amount
        self._holds[request_id] = _Hold(amount, slots, ts + self.reservation_ttl_s)
        return None

    async def settle(self, request_id: str, actual: int, *, now: datetime) -> None:
        check_amount(actual)
        hold = self._holds.pop(request_id, None)
        if hold is not None:
            for slot in hold.slots:
                slot.reserved -= hold.amount
                slot.spent += actual
        elif (hold := self._lapsed.pop(request_id, None)) is not None:
            for slot in hold.slots:
                slot.spent += actual

    async def release(self, request_id: str) -> None:
        self._lapsed.pop(request_id, None)
        hold = self._holds.pop(request_id, None)
        if hold is not None:
            for slot in hold.slots:
                slot.reserved -= hold.amount

    async def get_budget(self, scope: BudgetScope, *, now: datetime) -> tuple[int, int]:
        ts = timestamp(now)
        self._lapse(ts)
        slot = self._slots.get((scope.name, scope.period, period_start_ts(scope.period, ts)))
        return (slot.spent, slot.reserved) if slot else (0, 0)

    async def seed_spent(self, scope_name: str, period: Period, start: datetime, amount: int) -> None:
        self._slot(scope_name, period, timestamp(start)).spent = amount

    async def check_rate(
        self, request_id: str, scopes: Sequence[RateScope], tokens: int, *, now: datetime
    ) -> RateDecision:
        ts = timestamp(now)
        states: list[tuple[RateScope, _Window, float | None]] = []
        for scope in scopes:
            if scope.rpm is None and scope.tpm is None:
                continue
            window = self._windows.get(scope.name)
            if window is None:
                window = self._windows[scope.name] = _Window()
            window.prune(ts)
            states.append((scope, window, window.wait_s(scope.rpm, scope.tpm, tokens, ts)))
        if all(wait is None for _, _, wait in states):
            for _, window, _ in states:
                window.record(request_id, ts, tokens)
        return rate_decision(
            [WindowState(scope, len(w), w.tokens, w.oldest_ts(), wait) for scope, w, wait in states],
            ts,
        )

    async def adjust_tokens(
        self, request_id: str, scopes: Sequence[RateScope], actual_tokens: int, *, now: datetime
    ) -> None:
        ts = timestamp(now)
        for scope in scopes:
            window = self._windows.get(scope.name)
            if window is None:
                continue
            window.prune(ts)
            window.adjust(request_id, actual_tokens)

    async def close(self) -> None:
        return None

    def _slot(self, name: str, period: Period, ts: float) -> _Slot:
        start = period_start_ts(period, ts)
        slot = self._slots.get((name, period, start))
        if slot is None:
            end = period_end_ts(period, start)
            slot = self._slots[(name, period, start)] = _Slot(math.inf if end is None else end)
            if ts >= self._next_sweep_ts:
                self._sweep(ts)
        return slot

    def _sweep(self, ts: float) -> None:
        """Drops finished periods (like the Redis TTLs); runs at most hourly, when a new period slot appears."""
        self._next_sweep_ts = ts + 3600
        old = [k for k, s in self._slots.items() if s.end_ts + PERIOD_MARGIN_S < ts and s.reserved == 0]
        for key in old:
            del self._slots[key]

    def _lapse(self, ts: float) -> None:
        """Lapses holds older than reservation_ttl_s, and forgets lapsed holds after SETTLE_GRACE_S."""
        holds, lapsed = self._holds, self._lapsed
        while holds:
            request_id, hold = next(iter(holds.items()))
            if hold.deadline_ts > ts:
                break
            del holds[request_id]
            for slot in hold.slots:
                slot.reserved -= hold.amount
            hold.deadline_ts += SETTLE_GRACE_S
            lapsed[request_id] = hold
        while lapsed:
            request_id, hold = next(iter(lapsed.items()))
            if hold.deadline_ts > ts:
                break
            del lapsed[request_id]
