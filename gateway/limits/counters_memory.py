"""Budget reservations and rate windows for a single process, in memory (gateway.limits.counters has the rules
they follow and the protocol they implement; counters_redis.py the store shared by several processes)."""

from __future__ import annotations

import math
from array import array
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from gateway.limits.counters import (
    PERIOD_MARGIN_S,
    SETTLE_GRACE_S,
    WINDOW_S,
    BudgetRefusal,
    BudgetScope,
    Period,
    RateDecision,
    RateScope,
    WindowState,
    check_amount,
    period_end_ts,
    period_start_ts,
    rate_decision,
    timestamp,
)


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
