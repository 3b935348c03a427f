"""Output guardrails on streams: each choice's text is held back by a window of WINDOW characters, so a
finding split across chunks (an email address, a card number) is still redacted or blocked before any of
it reaches the client. The text is released as it leaves the window, and the rest at the choice's finish.

Cost: the client sees each character WINDOW characters later than it would without output guardrails
(about 25 tokens); each chunk is parsed once and the pending window (at most WINDOW plus one chunk) is
re-scanned, a few microseconds per chunk. Context checks (json_output, webhook) and shadow-mode
guardrails see the whole text at the end; an enforced block from them can only end the stream.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import orjson

from gateway.calls.context import CallContext
from gateway.checks.base import redact
from gateway.errors import PolicyDenied
from gateway.providers.base import DONE_EVENT

if TYPE_CHECKING:
    from gateway.policy.guardrails import GuardrailEngine
    from gateway.policy.loader import CompiledGuardrail

WINDOW = 96
KEY_BLOCK_START, KEY_BLOCK_END, MAX_HELD_BLOCK = "-----BEGIN", "-----END", 16_384


class StreamGuard:
    """One stream's window state. It does not keep the CallContext (which holds it): each call passes it, so a
    finished stream's context is freed at once rather than left in a reference cycle for a full collection."""

    def __init__(self, engine: GuardrailEngine, guardrails: Sequence[CompiledGuardrail]) -> None:
        """`guardrails`: the call's output guardrails, as the engine selected them for it."""
        self.engine = engine
        self.windowed = [g for g in guardrails if g.mode == "enforce" and not g.is_context]
        self.at_end = [g for g in guardrails if g not in self.windowed]
        self.pending: dict[int, str] = {}
        self.whole: dict[int, list[str]] = {}
        self.redacted: set[str] = set()
        self.template: dict[str, object] | None = None

    async def on_event(self, ctx: CallContext, event: bytes) -> bytes:
        if event == DONE_EVENT:
            return await self._flush_all(ctx) + event
        try:
            data = orjson.loads(event[6:])
        except orjson.JSONDecodeError:
            return event  # not a chunk (e.g. a comment line); nothing to check
        choices = data.get("choices") if isinstance(data, dict) else None
        if not choices:
            return event  # e.g. the usage chunk
        self.template = {k: v for k, v in data.items() if k not in ("choices", "usage")}
        keep = False
        for choice in choices:
            index = choice.get("index", 0)
            container, field = (
                (choice["delta"], "content") if isinstance(choice.get("delta"), dict) else (choice, "text")
            )
            text = container.get(field)
            if isinstance(text, str) and text:
                self.pending[index] = self.pending.get(index, "") + text
                self.whole.setdefault(index, []).append(text)
            released = await self._release(ctx, index, final=choice.get("finish_reason") is not None)
            if released or isinstance(text, str):
                container[field] = released
            other = container is not choice and any(k != "content" for k in container)
            if released or other or choice.get("finish_reason") is not None:
                keep = True
        return b"data: " + orjson.dumps(data) + b"\n\n" if keep else b""

    async def _release(self, ctx: CallContext, index: int, *, final: bool) -> str:
        text, held = self.pending.get(index, ""), ""
        begin = text.rfind(KEY_BLOCK_START)
        if not final and begin >= 0 and text.find(KEY_BLOCK_END, begin) < 0 and len(text) - begin <= MAX_HELD_BLOCK:
            # A private-key block is held whole, unscanned, until its END line arrives (up to 16 KB): its body
            # lines alone would not be recognised once the header had been redacted away.
            text, held = text[:begin], text[begin:]
        if text and self.windowed:
            text = self._check(ctx, text)
        if final:
            self.pending[index] = ""
            return text
        cut = len(text) - WINDOW
        if cut <= 0:
            self.pending[index] = text + held
            return ""
        self.pending[index] = text[cut:] + held
        return text[:cut]

    def _check(self, ctx: CallContext, text: str) -> str:
        from gateway.policy.guardrails import Decision

        for guardrail in self.windowed:
            findings = guardrail.check.scan(text)  # type: ignore[union-attr]
            if not findings:
                continue
            kinds = tuple(sorted({f.kind for f in findings}))
            if guardrail.action == "block":
                self.engine.record(ctx, [Decision(guardrail.id, guardrail.policy, "output", "block", kinds, False)])
                reason = (
                    guardrail.message or f"The output was blocked by guardrail {guardrail.id} ({guardrail.check_name})."
                )
                raise PolicyDenied(f"{reason} [rule {guardrail.id}]")
            if guardrail.action == "redact":
                text = redact(text, findings)
            if guardrail.id not in self.redacted:  # one decision per rule and stream, not one per chunk
                self.redacted.add(guardrail.id)
                self.engine.record(
                    ctx, [Decision(guardrail.id, guardrail.policy, "output", guardrail.action, kinds, False)]
                )
        return text

    async def _flush_all(self, ctx: CallContext) -> bytes:
        """At [DONE]: release what no finish chunk released, then run the whole-text guardrails."""
        flushed = []
        for index in sorted(self.pending):
            rest = await self._release(ctx, index, final=True)
            if rest:
                flushed.append({"index": index, "delta": {"content": rest}})
        out = b""
        if flushed and self.template is not None:
            out = b"data: " + orjson.dumps({**self.template, "choices": flushed}) + b"\n\n"
        if self.at_end:
            slots: list[tuple[dict[str, object], str]] = [
                ({"t": "".join(parts)}, "t") for _, parts in sorted(self.whole.items())
            ]
            await self.engine.run(ctx, "output", slots, self.at_end)  # type: ignore[arg-type]
        return out
