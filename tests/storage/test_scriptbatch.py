"""ScriptBatcher against the real Redis on 127.0.0.1:6379: concurrent script calls share a pipeline, each keeps
its own result or error."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError

from gateway.storage.scriptbatch import ScriptBatcher

# Appends ARGV[1] to a list and returns the list's length; 'bad' raises a script error instead.
SCRIPT = """
if ARGV[1] == 'bad' then return redis.error_reply('refused ' .. ARGV[1]) end
return redis.call('RPUSH', KEYS[1], ARGV[1])
"""


@pytest.fixture
async def client() -> AsyncIterator[redis.Redis]:
    client = redis.Redis.from_url("redis://127.0.0.1:6379/0")
    yield client
    await client.aclose()


async def test_concurrent_calls_keep_their_own_results_errors_and_order(client: redis.Redis) -> None:
    key = f"gwtest:batch:{uuid.uuid4().hex}"
    script, batcher = client.register_script(SCRIPT), ScriptBatcher(client)
    try:
        values = [f"v{i}" for i in range(50)]
        values[17] = "bad"
        results = await asyncio.gather(*(batcher.call(script, [key], [v]) for v in values), return_exceptions=True)
        assert isinstance(results[17], ResponseError) and "refused bad" in str(results[17])
        assert [r for i, r in enumerate(results) if i != 17] == list(range(1, 50))  # in call order, one each
        assert [v.decode() for v in await client.lrange(key, 0, -1)] == [v for v in values if v != "bad"]
    finally:
        await client.delete(key)
        await batcher.close()


async def test_a_flushed_script_cache_is_reloaded(client: redis.Redis) -> None:
    key = f"gwtest:batch:{uuid.uuid4().hex}"
    script, batcher = client.register_script(SCRIPT), ScriptBatcher(client)
    try:
        assert await batcher.call(script, [key], ["a"]) == 1  # alone: sent as a plain call
        with pytest.raises(ResponseError, match="refused bad"):
            await batcher.call(script, [key], ["bad"])
        await client.script_flush()  # as after a Redis restart
        assert await asyncio.gather(batcher.call(script, [key], ["b"]), batcher.call(script, [key], ["c"])) == [2, 3]
    finally:
        await client.delete(key)


async def test_an_unreachable_redis_fails_every_call_of_the_batch() -> None:
    client = redis.Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=1)
    script, batcher = client.register_script(SCRIPT), ScriptBatcher(client)
    try:
        results = await asyncio.gather(
            *(batcher.call(script, ["k"], [str(i)]) for i in range(3)), return_exceptions=True
        )
        assert all(isinstance(r, RedisConnectionError) for r in results)
    finally:
        await client.aclose()


async def test_a_cancelled_caller_does_not_disturb_the_others(client: redis.Redis) -> None:
    key = f"gwtest:batch:{uuid.uuid4().hex}"
    script, batcher = client.register_script(SCRIPT), ScriptBatcher(client)
    try:
        first = asyncio.ensure_future(batcher.call(script, [key], ["x"]))
        second = asyncio.ensure_future(batcher.call(script, [key], ["y"]))
        await asyncio.sleep(0)
        first.cancel()
        assert await second in (1, 2)  # the cancelled call may or may not have reached Redis
        with pytest.raises(asyncio.CancelledError):
            await first
        await batcher.close()
    finally:
        await client.delete(key)
