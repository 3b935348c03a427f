"""Redis script calls made in one turn of the event loop, sent together as one pipeline.

Every request of a gateway with `redis_url` runs four Lua scripts (rate check, reservation, settlement, token
correction). Sent one by one, redis-py spends ~60 µs of CPU on each (its command machinery, not the network):
0.24 ms per request, as much as the rest of the pipeline. Calls that arrive in the same loop turn (the requests
in flight under load) share one pipeline: one write, one read, one connection; 0.09 ms per request with 50 in
flight (measured in-process against the local Redis). A lone call is sent as before, one loop turn later.

Each script stays atomic on the server and the calls of one request keep their order (a request awaits each call
before making the next); a pipeline is not a transaction, so calls of different requests never wait for or fail
with each other, except when the connection itself fails, which fails every call of that batch as it would have
failed alone.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import redis.asyncio as redis
from redis.commands.core import AsyncScript
from redis.exceptions import NoScriptError

Args = Sequence[str | int | float]


class ScriptBatcher:
    def __init__(self, client: redis.Redis) -> None:
        self._client = client
        self._pending: list[tuple[AsyncScript, list[str], Args, asyncio.Future[Any]]] = []
        self._flushing: set[asyncio.Task[None]] = set()

    async def call(self, script: AsyncScript, keys: list[str], args: Args) -> Any:
        """What `await script(keys=keys, args=args)` returns, or raises, for this call."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        if not self._pending:
            loop.call_soon(self._flush_pending)
        self._pending.append((script, keys, args, future))
        return await future

    async def close(self) -> None:
        """Lets the batches already sent finish (their callers are waiting for them)."""
        if self._flushing:
            await asyncio.gather(*self._flushing, return_exceptions=True)

    def _flush_pending(self) -> None:
        batch, self._pending = self._pending, []
        task = asyncio.get_running_loop().create_task(self._flush(batch))
        self._flushing.add(task)
        task.add_done_callback(self._flushing.discard)

    async def _flush(self, batch: list[tuple[AsyncScript, list[str], Args, asyncio.Future[Any]]]) -> None:
        if len(batch) == 1:  # alone: a plain call, ~20 µs cheaper than a pipeline of one
            script, keys, args, future = batch[0]
            try:
                result = await script(keys=keys, args=args)
            except asyncio.CancelledError:
                future.cancel()
                raise
            except Exception as exc:
                result = exc
            self._settle(future, result)
            return
        try:
            async with self._client.pipeline(transaction=False) as pipe:
                for script, keys, args, _ in batch:
                    pipe.evalsha(script.sha, len(keys), *keys, *args)
                results = await pipe.execute(raise_on_error=False)
        except asyncio.CancelledError:
            for *_, future in batch:
                future.cancel()
            raise
        except Exception as exc:  # the connection failed: every call of the batch fails with it
            for *_, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        for (script, keys, args, future), result in zip(batch, results, strict=True):
            if isinstance(result, NoScriptError):
                # Redis lost its script cache (a restart, SCRIPT FLUSH): the script object loads it and runs.
                try:
                    result = await script(keys=keys, args=args)
                except Exception as exc:
                    result = exc
            self._settle(future, result)

    @staticmethod
    def _settle(future: asyncio.Future[Any], result: Any) -> None:
        if future.done():  # its caller was cancelled meanwhile
            return
        if isinstance(result, Exception):
            future.set_exception(result)
        else:
            future.set_result(result)
