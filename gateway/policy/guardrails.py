"""GuardrailEngine: runs a stage's checks over a call's texts and applies the most restrictive decision, recorded.

Every text the call carries is checked: each message's content (tool results included), text parts,
tool-call arguments, completion prompts and embedding inputs; on the way back, each choice's content and
tool-call arguments. Most restrictive wins (block > redact > warn > allow); a check that fails blocks
(fail closed); a policy in shadow mode records and reports (x-gateway-shadow-decision) but changes nothing.
"""

from __future__ import annotations

import logging
from collections.abc import MutableMapping, MutableSequence, Sequence
from dataclasses import dataclass
from typing import Union

import anyio
import anyio.to_thread

from gateway.calls.context import CallContext
from gateway.checks.base import Check, Finding, redact
from gateway.errors import PolicyDenied
from gateway.policy.loader import NO_KEY, CompiledGuardrail
from gateway.policy.spec import ACTION_RANK
from gateway.policy.store import PolicyStore

log = logging.getLogger("gateway.checks")
Container = Union[MutableMapping[str, object], MutableSequence[object]]  # noqa: UP007 - a runtime alias
Slot = tuple[Container, object]  # container[key] holds one text
# Texts this long (in all) are scanned in a worker thread, one call at a time, so the event loop serves other calls
# between the scans' C calls (re holds the GIL for each search, not across them). The default policy's input checks
# take ~0.15 ms per KiB: below this a scan costs well under the ~0.1 ms of a thread hop times its share.
OFF_LOOP_CHARS = 64 * 1024


@dataclass(slots=True)
class Decision:
    rule: str
    policy: str
    stage: str
    action: str
    kinds: tuple[str, ...]
    shadow: bool
    error: str | None = None

    def as_record(self) -> dict[str, object]:
        record: dict[str, object] = {"rule": self.rule, "policy": self.policy, "stage": self.stage,
                                     "action": self.action, "kinds": list(self.kinds)}  # fmt: skip
        if self.shadow:
            record["shadow"] = True
        if self.error:
            record["error"] = self.error
        return record


def input_slots(ctx: CallContext) -> list[Slot]:
    body = ctx.body
    slots: list[Slot] = []
    if ctx.operation == "chat":
        for message in body.get("messages") or ():
            if not isinstance(message, dict):
                continue
            content = message.get("content")
            if isinstance(content, str):
                slots.append((message, "content"))
            elif isinstance(content, list):
                slots += [
                    (part, "text") for part in content if isinstance(part, dict) and isinstance(part.get("text"), str)
                ]
            slots += tool_call_slots(message.get("tool_calls"))
    else:
        field = "prompt" if ctx.operation == "completions" else "input"
        value = body.get(field)
        if isinstance(value, str):
            slots.append((body, field))
        elif isinstance(value, list):
            slots += [(value, i) for i, item in enumerate(value) if isinstance(item, str)]
    return slots


def output_slots(data: dict[str, object]) -> list[Slot]:
    slots: list[Slot] = []
    for choice in data.get("choices") or ():  # type: ignore[attr-defined]
        if not isinstance(choice, dict):
            continue
        if isinstance(choice.get("text"), str):
            slots.append((choice, "text"))
        message = choice.get("message")
        if isinstance(message, dict):
            if isinstance(message.get("content"), str):
                slots.append((message, "content"))
            slots += tool_call_slots(message.get("tool_calls"))
    return slots


def tool_call_slots(calls: object) -> list[Slot]:
    slots: list[Slot] = []
    for call in calls if isinstance(calls, list) else ():
        function = call.get("function") if isinstance(call, dict) else None
        if isinstance(function, dict) and isinstance(function.get("arguments"), str):
            slots.append((function, "arguments"))
    return slots


class GuardrailEngine:
    """Runs one stage's guardrails over a call's texts; the only owner of the decision rules."""

    def __init__(self, store: PolicyStore) -> None:
        self.store = store
        self._limiter: anyio.CapacityLimiter | None = None  # made on first use, inside the running loop

    def guardrails(self, ctx: CallContext, stage: str) -> tuple[CompiledGuardrail, ...]:
        policies = self.store.current
        if policies.empty:
            return ()
        ctx.policy_sha256 = policies.sha256
        key = ctx.principal.key if ctx.principal else None
        return policies.guardrails_for(
            key=key.aliases if key else NO_KEY,
            team=(key.team_id, key.team_name) if key else (None, None),
            model=ctx.model,
            route=ctx.operation,
        )[stage]

    async def run(
        self, ctx: CallContext, stage: str, slots: list[Slot], guardrails: Sequence[CompiledGuardrail] | None = None
    ) -> bool:
        """Checks the texts in slots (redacting them in place); raises PolicyDenied on an enforced block.
        Returns True when a text was redacted. `guardrails` defaults to the stage's for this call."""
        if guardrails is None:
            guardrails = self.guardrails(ctx, stage)
        if not guardrails:
            return False
        decisions: list[Decision] = []
        blocked: list[CompiledGuardrail] = []
        changed = False
        texts = [container[key] for container, key in slots]  # type: ignore[index]
        off_loop = sum(map(len, texts)) >= OFF_LOOP_CHARS
        for guardrail in guardrails:
            try:
                if guardrail.is_context:
                    findings = await self.scan_context(guardrail, texts, ctx)
                elif off_loop:
                    findings = await self.scan_off_loop(guardrail.check, texts)  # type: ignore[arg-type]
                else:  # most checks are plain functions: no coroutine per guardrail
                    findings = [guardrail.check.scan(text) for text in texts]  # type: ignore[union-attr]
            except Exception as exc:  # a check that fails blocks: fail closed
                log.warning("guardrail %s failed; blocking: %s", guardrail.id, exc)
                decision = Decision(
                    guardrail.id, guardrail.policy, stage, "block", (), guardrail.mode == "shadow", str(exc)
                )
                decisions.append(decision)
                if not decision.shadow:
                    blocked.append(guardrail)
                continue
            if not any(findings):
                continue
            kinds = tuple(sorted({f.kind for per_text in findings for f in per_text}))
            decision = Decision(
                guardrail.id, guardrail.policy, stage, guardrail.action, kinds, guardrail.mode == "shadow"
            )
            decisions.append(decision)
            if decision.shadow:
                continue
            if guardrail.action == "block":
                blocked.append(guardrail)
            elif guardrail.action == "redact":
                for i, ((container, key), per_text) in enumerate(zip(slots, findings, strict=True)):
                    if per_text:
                        container[key] = texts[i] = redact(texts[i], per_text)  # type: ignore[index]
                        changed = True
        self.record(ctx, decisions)
        if blocked:
            first = blocked[0]
            ids = ", ".join(g.id for g in blocked)
            reason = first.message or f"The {stage} was blocked by guardrail {ids} ({first.check_name})."
            raise PolicyDenied(
                f"{reason} [rule {ids}; policy set {ctx.policy_sha256[:12] if ctx.policy_sha256 else ''}]"
            )
        return changed

    async def scan_off_loop(self, check: Check, texts: list[str]) -> list[list[Finding]]:
        if self._limiter is None:
            self._limiter = anyio.CapacityLimiter(1)
        return await anyio.to_thread.run_sync(scan_all, check, texts, limiter=self._limiter)

    async def scan_context(
        self, guardrail: CompiledGuardrail, texts: list[str], ctx: CallContext
    ) -> list[list[Finding]]:
        """A check that needs the whole call (an HTTP check, an LLM judge) sees the texts joined, once."""
        found = await guardrail.check.scan_context("\n".join(texts), ctx)  # type: ignore[union-attr]
        return [found] + [[] for _ in texts[1:]] if texts else [found]

    def record(self, ctx: CallContext, decisions: list[Decision]) -> None:
        if not decisions:
            return
        if ctx.decisions is None:
            ctx.decisions = []
        ctx.decisions += [d.as_record() for d in decisions]
        shadow = [d for d in ctx.decisions if d.get("shadow")]
        if shadow and any(d.shadow for d in decisions):
            # The most restrictive shadow decision of the whole call, input and output stages together.
            worst = max(shadow, key=lambda d: ACTION_RANK[str(d["action"])])
            value = f"{worst['action']}; rule={worst['rule']}; policy={worst['policy']}"
            ctx.response_headers = {**(ctx.response_headers or {}), "x-gateway-shadow-decision": value}


def scan_all(check: Check, texts: list[str]) -> list[list[Finding]]:
    return [check.scan(text) for text in texts]
