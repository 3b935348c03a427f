"""Embeddings for `similar` during a run: `local/...` models computed in process (the one loaded copy of
gateway/providers/local.py), any other model through the client's gateway; each (model, text) embedded once per run, and
the texts that concurrent attempts ask for gathered into one batch per model while the previous batch encodes."""

from __future__ import annotations

import asyncio
import math
import os
from collections.abc import Awaitable, Callable
from typing import Any

from gateway.errors import GatewayError

LOCAL_PREFIX = "local/"


class EmbeddingFailed(GatewayError):
    """An embedding model that cannot serve (unknown local model, wrong number of vectors): the assertion errors."""

    status_code = 502
    type = "upstream_error"
    code = "eval_embedding_failed"


def unit(vector: list[float]) -> list[float]:
    norm = math.sqrt(sum(v * v for v in vector)) or 1.0
    return [v / norm for v in vector]


def vectors_of(body: dict[str, Any]) -> list[list[float]]:
    data = sorted(body.get("data") or (), key=lambda item: item.get("index", 0))
    return [unit([float(v) for v in item["embedding"]]) for item in data]


class Embeddings:
    """Embeddings asked during a run, remembered by (model, text) (a `similar` expected value is embedded once), and
    coalesced: texts that concurrent attempts ask for in the same turn of the event loop go out as one batch."""

    BATCH = 256

    def __init__(self, fetch: Callable[[str, list[str]], Awaitable[list[list[float]]]]) -> None:
        self.fetch = fetch  # a configured embedding model, through the gateway
        self.known: dict[tuple[str, str], list[float]] = {}
        self._pending: dict[str, dict[str, asyncio.Future[None]]] = {}
        self._draining: dict[str, asyncio.Task[None]] = {}

    async def get(self, model: str, texts: list[str]) -> list[list[float]]:
        loop = asyncio.get_running_loop()
        waits = []
        for text in texts:
            if (model, text) not in self.known:
                pending = self._pending.setdefault(model, {})
                waits.append(pending.get(text) or pending.setdefault(text, loop.create_future()))
        if waits:
            if model not in self._draining:
                self._draining[model] = loop.create_task(self._drain(model))
            await asyncio.gather(*waits)
        return [self.known[(model, text)] for text in texts]

    async def _drain(self, model: str) -> None:
        """One batch in flight per model; what is asked meanwhile waits and goes out as the next batch."""
        try:
            await asyncio.sleep(0)  # the attempts ready in this turn add their texts first
            while self._pending.get(model):
                await self._flush(model, self._pending.pop(model))
        finally:
            del self._draining[model]

    async def _flush(self, model: str, batch: dict[str, asyncio.Future[None]]) -> None:
        texts = list(batch)
        try:
            rows = []
            for start in range(0, len(texts), self.BATCH):
                rows += await self._encode(model, texts[start : start + self.BATCH])
            if len(rows) != len(texts):
                raise EmbeddingFailed(f"embedding model {model} gave {len(rows)} vectors for {len(texts)} texts")
        except Exception as exc:  # noqa: BLE001 - every waiting assertion gets the error
            for future in batch.values():
                if not future.done():
                    future.set_exception(exc)
            return
        for text, row in zip(texts, rows, strict=True):
            self.known[(model, text)] = row
            if not batch[text].done():
                batch[text].set_result(None)

    async def _encode(self, model: str, texts: list[str]) -> list[list[float]]:
        if not model.startswith(LOCAL_PREFIX):
            return await self.fetch(model, texts)
        from gateway.providers.local import get_encoder

        try:
            encoder = get_encoder(model[len(LOCAL_PREFIX) :])
            encoder.use_threads(len(os.sched_getaffinity(0)))  # a run is a batch job: every core it may use encodes
        except LookupError as exc:
            raise EmbeddingFailed(str(exc)) from None
        return [unit(row.tolist()) for row in await encoder.aencode(texts)]
