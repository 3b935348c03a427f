"""PromptStore: prompt versions and labels in the database; creating versions and the one place labels move.

Versions are immutable and numbered from 1 per prompt. `latest` is not stored: it is the highest version.
Every write is audited (prompt.version_created, prompt.label_moved with who moved it, from and to) and then
announced, so every instance's PromptRegistry reloads its index.
"""

from __future__ import annotations

import asyncio
import difflib
import random
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Protocol

import anyio.to_thread
from sqlalchemy import func
from sqlalchemy import select as core_select
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select

from gateway.audit.events import AuditEvent
from gateway.audit.log import AuditLog
from gateway.calls.caller import Principal
from gateway.errors import InvalidRequest, PermissionDenied, PromptNotFound
from gateway.prompts.render import TemplateInvalid, check_templates
from gateway.prompts.spec import LATEST, PromptSpec, check_label, prompt_file
from gateway.storage.db import Database
from gateway.storage.tables import PromptLabel, PromptVersion

# Versions and labels, one statement; sum(version): a move changes it even when the mover's clock is behind the
# newest updated_at.
_STAMP = core_select(
    core_select(func.count()).select_from(PromptVersion).scalar_subquery(),
    core_select(func.max(PromptVersion.id)).scalar_subquery(),
    core_select(func.count()).select_from(PromptLabel).scalar_subquery(),
    core_select(func.max(PromptLabel.updated_at)).scalar_subquery(),
    core_select(func.sum(PromptLabel.version)).scalar_subquery(),
)

Announce = Callable[[], Awaitable[None]]
ATTEMPTS = 10


class PromotionGate(Protocol):
    """The promotion gate (gateway.evals.gate.check_promotion for prompts, injected by services.py): the passing eval
    run that lets a label move to a version, or None (label not gated, or forced); raises EvalRequired (409),
    PermissionDenied or InvalidRequest (a force without admin or reason)."""

    async def __call__(
        self, *, name: str, label: str, version: int, force_reason: str | None, actor_is_admin: bool
    ) -> str | None: ...


def spec_of(row: PromptVersion) -> PromptSpec:
    return PromptSpec.model_validate({**row.spec, "commit_message": row.commit_message})


class PromptStore:
    def __init__(
        self,
        db: Database,
        audit: AuditLog,
        *,
        protected_labels: tuple[str, ...],
        announce: Announce,
        gate: PromotionGate | None = None,
    ) -> None:
        self.db = db
        self.audit = audit
        self.protected_labels = frozenset(protected_labels)
        self.announce = announce
        self.gate = gate
        self._creating = asyncio.Lock()  # writers on this instance take turns; other instances race (see below)

    async def create_version(
        self, spec: PromptSpec, who: Principal, *, if_changed: bool = False
    ) -> tuple[PromptVersion, bool]:
        """A new version; with if_changed, the latest one when its content is the same. Returns (row, created).
        Raises InvalidRequest (400) for a template that does not compile or reaches past the sandbox."""
        try:
            await anyio.to_thread.run_sync(check_templates, spec)  # a bounded trial render, off the event loop
        except TemplateInvalid as exc:
            raise InvalidRequest(f"Prompt {spec.id!r}: {exc}", param="messages") from None
        digest = spec.content_sha256()
        async with self._creating:
            return await self._insert_version(spec, who, digest, if_changed=if_changed)

    async def _insert_version(
        self, spec: PromptSpec, who: Principal, digest: str, *, if_changed: bool
    ) -> tuple[PromptVersion, bool]:
        for attempt in range(ATTEMPTS):  # writers on other instances may pick the same number: the unique
            if attempt:  # constraint decides, the loser retries after a short random wait
                await asyncio.sleep(random.uniform(0, 0.01 * attempt))
            latest = await self._latest(spec.id)
            if if_changed and latest is not None and latest.content_sha256 == digest:
                return latest, False
            row = PromptVersion(
                prompt_id=spec.id,
                version=(latest.version if latest else 0) + 1,
                spec=spec.content(),
                content_sha256=digest,
                commit_message=spec.commit_message,
                created_by=who.key_id or "master",
            )
            try:
                async with self.db.session() as session:
                    session.add(row)
                    await session.commit()
                    await session.refresh(row)
            except IntegrityError:
                continue
            self.audit.record(AuditEvent.by(
                who, "prompt.version_created", subject=f"{spec.id}@{row.version}", outcome="created",
                reason=spec.commit_message, details={"prompt_id": spec.id, "version": row.version, "sha256": digest},
            ))  # fmt: skip
            await self.announce()
            return row, True
        raise InvalidRequest(f"Prompt {spec.id!r} is being changed by someone else right now; retry.")

    async def move_label(
        self, prompt_id: str, label: str, version: int, who: Principal, *, force_reason: str | None = None
    ) -> tuple[PromptLabel, int | None]:
        """THE label move (production included): checks, the promotion gate, writes, audits, announces. Returns (label,
        previous version). Raises InvalidRequest (bad label), PermissionDenied (a protected label, not an admin),
        PromptNotFound, and what the gate raises (EvalRequired, 409: no passing run of a gated label's suite against
        the version). `force_reason` (an admin's) moves a gated label without a run; it is audited."""
        try:
            check_label(label)
        except ValueError as exc:
            raise InvalidRequest(str(exc), param="label") from None
        if label in self.protected_labels and who.role != "admin":
            raise PermissionDenied(
                f"Label {label!r} is protected: only an admin may move it.", param="label", code="protected_label"
            )
        await self.get_version(prompt_id, version)  # the target exists
        run_id = None
        if self.gate is not None:
            run_id = await self.gate(
                name=prompt_id,
                label=label,
                version=version,
                force_reason=force_reason,
                actor_is_admin=who.role == "admin",
            )
        try:
            row, previous = await self._write_label(prompt_id, label, version, who)
        except IntegrityError:  # another writer created this label first: now it exists, move it
            row, previous = await self._write_label(prompt_id, label, version, who)
        details: dict[str, object] = {"prompt_id": prompt_id, "label": label, "from_version": previous,
                                      "to_version": version}  # fmt: skip
        if run_id is not None:
            details["eval_run_id"] = run_id
        if force_reason is not None:
            details["forced_reason"] = force_reason
        self.audit.record(AuditEvent.by(
            who, "prompt.label_moved", subject=f"{prompt_id}:{label}", outcome="forced" if force_reason else "moved",
            reason=force_reason, details=details,
        ))  # fmt: skip
        await self.announce()
        return row, previous

    async def _write_label(
        self, prompt_id: str, label: str, version: int, who: Principal
    ) -> tuple[PromptLabel, int | None]:
        async with self.db.session() as session:
            # FOR UPDATE (Postgres): concurrent moves of one label queue, so each audits the version it moved from.
            row = await session.get(PromptLabel, (prompt_id, label), with_for_update=True)
            previous = row.version if row else None
            if row is None:
                row = PromptLabel(prompt_id=prompt_id, label=label, version=version, updated_by=who.key_id or "master")
            else:
                row.version, row.updated_by = version, who.key_id or "master"
                row.updated_at = datetime.now(UTC)
            session.add(row)
            await session.commit()
            await session.refresh(row)
        return row, previous

    async def _latest(self, prompt_id: str) -> PromptVersion | None:
        query = select(PromptVersion).where(PromptVersion.prompt_id == prompt_id)
        async with self.db.session() as session:
            return (await session.exec(query.order_by(col(PromptVersion.version).desc()).limit(1))).first()

    async def get_version(self, prompt_id: str, version: int) -> PromptVersion:
        query = select(PromptVersion).where(PromptVersion.prompt_id == prompt_id, PromptVersion.version == version)
        async with self.db.session() as session:
            row = (await session.exec(query)).first()
        if row is None:
            raise PromptNotFound(f"Prompt {prompt_id!r} has no version {version}.", param="prompt.version")
        return row

    async def versions(self, prompt_id: str) -> list[PromptVersion]:
        query = select(PromptVersion).where(PromptVersion.prompt_id == prompt_id).order_by(col(PromptVersion.version))
        async with self.db.session() as session:
            rows = list((await session.exec(query)).all())
        if not rows:
            raise PromptNotFound(f"No prompt {prompt_id!r}.", param="prompt.id")
        return rows

    async def index(self) -> dict[str, dict[str, int]]:
        """prompt id -> label -> version, with `latest`: everything the hot path needs to resolve a reference."""
        async with self.db.session() as session:
            latest = (await session.exec(
                select(PromptVersion.prompt_id, func.max(PromptVersion.version)).group_by(PromptVersion.prompt_id)
            )).all()  # fmt: skip
            labels = (await session.exec(select(PromptLabel))).all()
        found: dict[str, dict[str, int]] = {prompt_id: {LATEST: version} for prompt_id, version in latest}
        for row in labels:
            found.setdefault(row.prompt_id, {})[row.label] = row.version
        return found

    async def version_stamp(self) -> tuple[object, ...]:
        """Changes whenever a version is created or a label moves: what instances poll."""
        return await self.db.read_row(_STAMP)

    async def diff(self, prompt_id: str, old: int, new: int) -> str:
        """A unified diff of two versions' content, as YAML."""
        a, b = await self.get_version(prompt_id, old), await self.get_version(prompt_id, new)
        return "".join(difflib.unified_diff(
            as_yaml(a).splitlines(keepends=True), as_yaml(b).splitlines(keepends=True),
            fromfile=f"{prompt_id}@{old}", tofile=f"{prompt_id}@{new}",
        ))  # fmt: skip


def as_yaml(row: PromptVersion) -> str:
    return prompt_file(spec_of(row))
