"""PromptRegistry: resolves `id@label` / `id@version` from memory on the hot path, reloaded on every change.

The index (prompt -> label -> version, `latest` included) is small and held whole; compiled versions are
immutable, so each is loaded once and kept (bounded). A label move on any instance reaches every other one at
once through Redis pub/sub when there is Redis, and within `cache_poll_s` (0.5 s) by polling in any case. Versions
that labels point to are compiled when the index loads, so a resolved label never waits on the database; a
version pinned by number is loaded on first use.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import TYPE_CHECKING

from gateway.audit.log import AuditLog
from gateway.errors import PromptNotFound
from gateway.prompts.render import CompiledPrompt, compile_prompt
from gateway.prompts.spec import LATEST
from gateway.prompts.store import PromotionGate, PromptStore, spec_of
from gateway.storage.changefeed import ChangeFeed
from gateway.storage.db import Database

if TYPE_CHECKING:  # redis is imported only when redis_url is set
    from redis.asyncio import Redis

MAX_COMPILED = 2_000


class PromptRegistry:
    def __init__(
        self,
        db: Database,
        audit: AuditLog,
        *,
        protected_labels: tuple[str, ...],
        redis: Redis | None = None,
        gate: PromotionGate | None = None,
    ) -> None:
        self.store = PromptStore(db, audit, protected_labels=protected_labels, announce=self.changed, gate=gate)
        self._index: dict[str, dict[str, int]] = {}
        self._compiled: OrderedDict[tuple[str, int], CompiledPrompt] = OrderedDict()
        stamp = self.store.version_stamp
        self.feed = ChangeFeed("prompts", stamp=stamp, reload=self._load, redis=redis)

    async def resolve(self, prompt_id: str, *, label: str | None = None, version: int | None = None) -> CompiledPrompt:
        """The compiled version a reference names; raises PromptNotFound (404): unknown prompt, label or version."""
        labels = self._index.get(prompt_id)
        if labels is None:
            raise PromptNotFound(f"No prompt {prompt_id!r}; GET /admin/prompts lists them.", param="prompt.id")
        if version is None:
            name = label or LATEST
            version = labels.get(name)
            if version is None:
                known = ", ".join(sorted(labels))
                raise PromptNotFound(
                    f"Prompt {prompt_id!r} has no label {name!r} (labels: {known}).", param="prompt.label"
                )
        elif version > labels.get(LATEST, 0) or version < 1:
            raise PromptNotFound(f"Prompt {prompt_id!r} has no version {version}.", param="prompt.version")
        compiled = self._compiled.get((prompt_id, version))
        if compiled is None:
            compiled = await self._load_version(prompt_id, version)
        return compiled

    async def _load_version(self, prompt_id: str, version: int) -> CompiledPrompt:
        row = await self.store.get_version(prompt_id, version)
        compiled = compile_prompt(spec_of(row), version)
        self._compiled[(prompt_id, version)] = compiled
        while len(self._compiled) > MAX_COMPILED:
            self._compiled.popitem(last=False)
        return compiled

    async def _load(self) -> None:
        index = await self.store.index()
        for prompt_id, labels in index.items():
            for version in set(labels.values()):
                if (prompt_id, version) not in self._compiled:
                    await self._load_version(prompt_id, version)
        self._index = index

    async def reload(self) -> None:
        await self.feed.refresh(force=True)

    async def changed(self) -> None:
        """After a write on this instance: every instance reloads its index."""
        await self.feed.changed()
