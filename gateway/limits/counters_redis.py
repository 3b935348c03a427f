"""Budget reservations and sliding-window rate counters in Redis, shared by several gateway processes.

Same semantics as `MemoryCounters` (see `gateway.limits.counters`). Every multi-step operation is one Lua script,
so a reservation across a key and its team is atomic across processes. Scripts use the `now` the caller passes,
never Redis TIME, and derive keys from a scope's base key, so this needs a standalone Redis (not Cluster).

Data layout (prefix `gw:`; `<base>` = `gw:budget:<scope name>:<period>:<period start, epoch s>`, e.g.
`gw:budget:key:abc:monthly:1796083200`):

    <base>:spent      STRING  booked nano-dollars; seeded with SET NX
    <base>:reserved   STRING  sum of the live holds below
    <base>:held       HASH    request id -> held nano-dollars
    <base>:expiry     ZSET    request id scored by when its hold lapses (now + reservation_ttl_s); each script
                              touching a base first lapses what is due, so a crashed process frees its holds
    gw:hold:<request id>  HASH  base -> that period's key deadline; what settle/release must undo. Its Redis TTL is
                              reservation_ttl_s + SETTLE_GRACE_S, so a late settle still books the cost.
    gw:rate:<scope name>:log  ZSET    request id scored by its time (exact, sub-millisecond)
    gw:rate:<scope name>:tok  HASH    request id -> tokens (estimate, then actual)
    gw:rate:<scope name>:sum  STRING  tokens in the window
    gw:rate:<scope name>:seq  STRING  suffixes for a request id seen twice in one window (`<id>#<n>`), so a reused
                              id still counts as a request and adjust_tokens keeps to the first

Budget keys expire PERIOD_MARGIN_S after their period ends (`total` never); rate keys WINDOW_S after their last use.
Amounts travel as strings (Lua would print large numbers in exponent form) and compare exactly up to MAX_AMOUNT.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import UTC, datetime

import redis.asyncio as redis

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
from gateway.storage.scriptbatch import ScriptBatcher

_LAPSE = """
local function lapse(base, now)
  local expiry, held = base .. ':expiry', base .. ':held'
  while true do
    local due = redis.call('ZRANGEBYSCORE', expiry, '-inf', now, 'LIMIT', 0, 256)
    if #due == 0 then return end
    local amounts = redis.call('HMGET', held, unpack(due))
    for i = 1, #due do
      if amounts[i] then redis.call('DECRBY', base .. ':reserved', amounts[i]) end
    end
    redis.call('HDEL', held, unpack(due))
    redis.call('ZREM', expiry, unpack(due))
  end
end
"""

# KEYS: hold record, then one base per scope. ARGV: request id, amount, now, lapses at, record ttl, then per scope:
# limit, key deadline (0 = never). Returns {0}, {-1} (id already held) or {refusing scope index, spent, reserved}.
_RESERVE = (
    _LAPSE
    + """
local id, amount, now = ARGV[1], ARGV[2], ARGV[3]
if redis.call('EXISTS', KEYS[1]) == 1 then return {-1} end
for i = 2, #KEYS do
  local base = KEYS[i]
  lapse(base, now)
  local spent = redis.call('GET', base .. ':spent') or '0'
  local reserved = redis.call('GET', base .. ':reserved') or '0'
  -- Subtracted, not summed: each number is exact up to MAX_AMOUNT, the sum of three may pass 2^53 and round down.
  if tonumber(amount) > tonumber(ARGV[2 * i + 2]) - tonumber(spent) - tonumber(reserved) then
    return {i - 1, spent, reserved}
  end
end
for i = 2, #KEYS do
  local base, deadline = KEYS[i], ARGV[2 * i + 3]
  redis.call('INCRBY', base .. ':reserved', amount)
  redis.call('HSET', base .. ':held', id, amount)
  redis.call('ZADD', base .. ':expiry', ARGV[4], id)
  redis.call('HSET', KEYS[1], base, deadline)
  if deadline ~= '0' then
    local ttl = math.max(math.ceil(tonumber(deadline) - tonumber(now)), 1)
    redis.call('EXPIRE', base .. ':reserved', ttl)
    redis.call('EXPIRE', base .. ':held', ttl)
    redis.call('EXPIRE', base .. ':expiry', ttl)
  end
end
redis.call('EXPIRE', KEYS[1], ARGV[5])
return {0}
"""
)

# KEYS: hold record. ARGV: request id, actual ('' = release without booking), now.
_FINISH = """
local fields = redis.call('HGETALL', KEYS[1])
if #fields == 0 then return 0 end
local id, actual = ARGV[1], ARGV[2]
for i = 1, #fields, 2 do
  local base, deadline = fields[i], fields[i + 1]
  local amount = redis.call('HGET', base .. ':held', id)
  if amount then
    redis.call('HDEL', base .. ':held', id)
    redis.call('ZREM', base .. ':expiry', id)
    redis.call('DECRBY', base .. ':reserved', amount)
  end
  if actual ~= '' then
    redis.call('INCRBY', base .. ':spent', actual)
    if deadline ~= '0' then
      redis.call('EXPIRE', base .. ':spent', math.max(math.ceil(tonumber(deadline) - tonumber(ARGV[3])), 1))
    end
  end
end
redis.call('DEL', KEYS[1])
return 1
"""

# KEYS: one base. ARGV: now. Returns {spent, reserved}.
_BUDGET = (
    _LAPSE
    + """
lapse(KEYS[1], ARGV[1])
return {redis.call('GET', KEYS[1] .. ':spent') or '0', redis.call('GET', KEYS[1] .. ':reserved') or '0'}
"""
)

_PRUNE = """
local function prune(base, cutoff)
  local log, tok = base .. ':log', base .. ':tok'
  while true do
    local gone = redis.call('ZRANGEBYSCORE', log, '-inf', cutoff, 'LIMIT', 0, 256)
    if #gone == 0 then break end
    local amounts = redis.call('HMGET', tok, unpack(gone))
    for i = 1, #gone do
      if amounts[i] then redis.call('DECRBY', base .. ':sum', amounts[i]) end
    end
    redis.call('HDEL', tok, unpack(gone))
    redis.call('ZREM', log, unpack(gone))
  end
  return redis.call('ZCARD', log), tonumber(redis.call('GET', base .. ':sum') or '0')
end
"""

# KEYS: one base per limited scope. ARGV: request id, tokens, now, cutoff (now - window), window, then per scope:
# rpm, tpm (-1 = none). Returns {allowed, then per scope: count, tokens, wait ('' fits, 'inf' never), oldest ('' none)}.
_RATE = (
    _PRUNE
    + """
local window = tonumber(ARGV[5])
local function wait_for(base, count, used, rpm, tpm, tokens, now)
  local wait = nil
  local log = base .. ':log'
  if rpm >= 0 and count >= rpm then
    if rpm == 0 then return 'inf' end
    wait = tonumber(redis.call('ZRANGE', log, count - rpm, count - rpm, 'WITHSCORES')[2]) + window - now
  end
  if tpm >= 0 and used + tokens > tpm then
    if tokens > tpm then return 'inf' end
    local need, freed, start = used + tokens - tpm, 0, 0
    while freed < need do
      local entries = redis.call('ZRANGE', log, start, start + 255, 'WITHSCORES')
      if #entries == 0 then break end
      local ids = {}
      for j = 1, #entries, 2 do ids[#ids + 1] = entries[j] end
      local amounts = redis.call('HMGET', base .. ':tok', unpack(ids))
      for j = 1, #ids do
        freed = freed + tonumber(amounts[j] or '0')
        if freed >= need then
          wait = math.max(wait or 0, tonumber(entries[2 * j]) + window - now)
          break
        end
      end
      start = start + 256
    end
  end
  if wait == nil then return '' end
  return string.format('%.6f', wait)
end

local id, tokens, now = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local counts, used, waits, allowed = {}, {}, {}, 1
for i = 1, #KEYS do
  counts[i], used[i] = prune(KEYS[i], ARGV[4])
  waits[i] = wait_for(KEYS[i], counts[i], used[i], tonumber(ARGV[4 + 2 * i]), tonumber(ARGV[5 + 2 * i]), tokens, now)
  if waits[i] ~= '' then allowed = 0 end
end
local out = {allowed}
for i = 1, #KEYS do
  local base = KEYS[i]
  if allowed == 1 then
    local member = id
    if redis.call('HEXISTS', base .. ':tok', id) == 1 then  -- a reused id is still a request of its own
      member = id .. '#' .. redis.call('INCR', base .. ':seq')
    end
    redis.call('ZADD', base .. ':log', ARGV[3], member)
    redis.call('HSET', base .. ':tok', member, ARGV[2])
    redis.call('INCRBY', base .. ':sum', ARGV[2])
    for _, suffix in ipairs({':log', ':tok', ':sum', ':seq'}) do redis.call('EXPIRE', base .. suffix, window + 1) end
    counts[i], used[i] = counts[i] + 1, used[i] + tokens
  end
  local oldest = redis.call('ZRANGE', base .. ':log', 0, 0, 'WITHSCORES')[2] or ''
  out[#out + 1] = counts[i]
  out[#out + 1] = used[i]
  out[#out + 1] = waits[i]
  out[#out + 1] = oldest
end
return out
"""
)

# KEYS: one base per scope. ARGV: request id, actual tokens, cutoff.
_ADJUST = (
    _PRUNE
    + """
for i = 1, #KEYS do
  local base = KEYS[i]
  prune(base, ARGV[3])
  local old = redis.call('HGET', base .. ':tok', ARGV[1])
  if old then
    redis.call('HSET', base .. ':tok', ARGV[1], ARGV[2])
    redis.call('INCRBY', base .. ':sum', tonumber(ARGV[2]) - tonumber(old))
  end
end
return 0
"""
)


class RedisCounters:
    """Counters shared through Redis; one script call per operation, the calls of concurrent requests pipelined."""

    def __init__(self, client: redis.Redis, *, prefix: str = "gw:", reservation_ttl_s: float = 900) -> None:
        if not 0 < reservation_ttl_s <= PERIOD_MARGIN_S:
            raise ValueError(f"reservation_ttl_s must be in (0, {PERIOD_MARGIN_S}]; got {reservation_ttl_s}.")
        self.client = client
        self.prefix = prefix
        self.reservation_ttl_s = reservation_ttl_s
        self._owns_client = False
        self._record_ttl = str(math.ceil(reservation_ttl_s + SETTLE_GRACE_S))
        self._reserve = client.register_script(_RESERVE)
        self._finish = client.register_script(_FINISH)
        self._budget = client.register_script(_BUDGET)
        self._rate = client.register_script(_RATE)
        self._adjust = client.register_script(_ADJUST)
        self._batch = ScriptBatcher(client)

    @classmethod
    async def from_url(
        cls, url: str, *, prefix: str = "gw:", reservation_ttl_s: float = 900, max_connections: int = 64
    ) -> RedisCounters:
        """Connects (and checks the connection); `close()` then closes the client. Raises redis.ConnectionError.

        The pool blocks (up to 5 s) for a free connection: redis-py's default pool raises "Too many connections"
        as soon as more than 100 requests are in flight, which a busy gateway reaches."""
        pool = redis.BlockingConnectionPool.from_url(url, max_connections=max_connections, timeout=5)
        client = redis.Redis.from_pool(pool)
        try:
            await client.ping()
        except BaseException:
            await client.aclose()
            raise
        counters = cls(client, prefix=prefix, reservation_ttl_s=reservation_ttl_s)
        counters._owns_client = True
        return counters

    async def reserve(
        self, request_id: str, scopes: Sequence[BudgetScope], amount: int, *, now: datetime
    ) -> BudgetRefusal | None:
        ts = timestamp(now)
        check_amount(amount)
        if not scopes:
            return None
        keys = [self._hold_key(request_id)]
        args: list[str | int | float] = [
            request_id,
            amount,
            repr(ts),
            repr(ts + self.reservation_ttl_s),
            self._record_ttl,
        ]
        for scope in scopes:
            start = period_start_ts(scope.period, ts)
            keys.append(f"{self.prefix}budget:{scope.name}:{scope.period}:{start}")
            args += (scope.limit, _deadline(scope.period, start))
        result = await self._batch.call(self._reserve, keys, args)
        index = int(result[0])
        if index == 0:
            return None
        if index < 0:
            raise ValueError(f"Request {request_id!r} already holds a reservation.")
        return BudgetRefusal(scopes[index - 1], int(result[1]), int(result[2]), amount)

    async def settle(self, request_id: str, actual: int, *, now: datetime) -> None:
        check_amount(actual)
        await self._batch.call(self._finish, [self._hold_key(request_id)], [request_id, actual, repr(timestamp(now))])

    async def release(self, request_id: str) -> None:
        await self._batch.call(self._finish, [self._hold_key(request_id)], [request_id, "", "0"])

    async def get_budget(self, scope: BudgetScope, *, now: datetime) -> tuple[int, int]:
        ts = timestamp(now)
        base = f"{self.prefix}budget:{scope.name}:{scope.period}:{period_start_ts(scope.period, ts)}"
        spent, reserved = await self._batch.call(self._budget, [base], [repr(ts)])
        return int(spent), int(reserved)

    async def seed_spent(self, scope_name: str, period: Period, start: datetime, amount: int) -> None:
        start_ts = period_start_ts(period, timestamp(start))
        key = f"{self.prefix}budget:{scope_name}:{period}:{start_ts}:spent"
        deadline = _deadline(period, start_ts)
        # No `now` here: the TTL counts from the wall clock, floored so a seed for a past period still lands.
        ttl = max(math.ceil(deadline - datetime.now(UTC).timestamp()), PERIOD_MARGIN_S) if deadline else None
        await self.client.set(key, amount, nx=True, ex=ttl)

    async def check_rate(
        self, request_id: str, scopes: Sequence[RateScope], tokens: int, *, now: datetime
    ) -> RateDecision:
        ts = timestamp(now)
        limited = [s for s in scopes if s.rpm is not None or s.tpm is not None]
        if not limited:
            return rate_decision([], ts)
        keys = [f"{self.prefix}rate:{s.name}" for s in limited]
        args: list[str | int | float] = [request_id, tokens, repr(ts), repr(ts - WINDOW_S), WINDOW_S]
        for s in limited:
            args += (-1 if s.rpm is None else s.rpm, -1 if s.tpm is None else s.tpm)
        result = await self._batch.call(self._rate, keys, args)
        windows = []
        for i, scope in enumerate(limited):
            count, used, wait, oldest = result[1 + 4 * i : 5 + 4 * i]
            windows.append(
                WindowState(
                    scope, int(count), int(used), float(oldest) if oldest else None, float(wait) if wait else None
                )
            )
        return rate_decision(windows, ts)

    async def adjust_tokens(
        self, request_id: str, scopes: Sequence[RateScope], actual_tokens: int, *, now: datetime
    ) -> None:
        keys = [f"{self.prefix}rate:{s.name}" for s in scopes if s.rpm is not None or s.tpm is not None]
        if keys:
            await self._batch.call(self._adjust, keys, [request_id, actual_tokens, repr(timestamp(now) - WINDOW_S)])

    async def close(self) -> None:
        await self._batch.close()
        if self._owns_client:
            await self.client.aclose()

    def _hold_key(self, request_id: str) -> str:
        return f"{self.prefix}hold:{request_id}"


def _deadline(period: Period, start: int) -> int:
    """When a period's keys may go (its end plus PERIOD_MARGIN_S), in epoch seconds; 0 for `total` (never)."""
    end = period_end_ts(period, start)
    return 0 if end is None else end + PERIOD_MARGIN_S
