"""Tool calls in streams: each call's deltas are held until its choice finishes, then judged whole and released.

A streamed call arrives in pieces (id and name first, the argument string in fragments). Nothing of a call
reaches the client before its arguments are complete, because a policy can only judge complete arguments.
When the choice's finish_reason arrives (or the stream ends), the calls are judged by the ToolGovernor:
allowed ones are sent as one delta each (same index order, same id, same arguments), withheld ones are
replaced by an explanation in a content delta, and the finishing chunk carries the `gateway` field that a
non-streamed response carries. Output guardrails check the complete arguments first (redact or block).
Text deltas are not held: only the tool-call part of the stream waits.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import orjson

from gateway.calls.context import CallContext
from gateway.policy.guardrails import tool_call_slots
from gateway.providers.base import DONE_EVENT
from gateway.toolcalls.governor import ToolGovernor, Verdict, add_headers

if TYPE_CHECKING:
    from gateway.policy.guardrails import GuardrailEngine

MAX_HELD_BYTES = 1 << 20  # arguments of one choice's calls held at most; beyond that the stream is refused


class ToolStream:
    """One stream's held calls. Like StreamGuard it does not keep the CallContext that holds it (no cycle)."""

    def __init__(self, governor: ToolGovernor, guardrails: GuardrailEngine) -> None:
        self.governor = governor
        self.guardrails = guardrails
        self.held: dict[int, dict[int, dict[str, object]]] = {}  # choice index -> tool index -> call so far
        self.sizes: dict[int, int] = {}
        self.template: dict[str, object] = {}

    async def on_event(self, ctx: CallContext, event: bytes) -> bytes:
        if event == DONE_EVENT:
            return await self._flush_all(ctx) + event
        if not self.held and b"tool" not in event and b"\\u" not in event:
            return event  # no call can hide here (not even behind a \\u escape of its key)
        try:
            data = orjson.loads(event[6:])
        except orjson.JSONDecodeError:
            return event
        choices = data.get("choices") if isinstance(data, dict) else None
        if not choices:
            return event
        self.template = {k: v for k, v in data.items() if k not in ("choices", "usage")}
        out = b""
        keep = False
        for choice in choices:
            index = choice.get("index", 0)
            delta = choice.get("delta")
            if isinstance(delta, dict) and delta.get("tool_calls"):
                self._hold(index, delta.pop("tool_calls"))
                if choice.get("finish_reason") is None and not delta:
                    continue  # nothing left of this choice's chunk
            if choice.get("finish_reason") is not None and index in self.held:
                release, report, kept = await self._release(ctx, index)
                out += release
                if report:
                    data["gateway"] = {"tool_calls": report}
                if not kept and choice.get("finish_reason") == "tool_calls":
                    choice["finish_reason"] = "stop"
            keep = True
        if not keep:
            return out
        return out + b"data: " + orjson.dumps(data) + b"\n\n"

    def _hold(self, index: int, deltas: object) -> None:
        calls = self.held.setdefault(index, {})
        for delta in deltas if isinstance(deltas, list) else ():
            if not isinstance(delta, dict):
                continue
            position = delta.get("index", len(calls))
            call = calls.setdefault(position, {"id": None, "type": "function", "name": "", "arguments": []})
            if delta.get("id"):
                call["id"] = delta["id"]
            function = delta.get("function") or {}
            if function.get("name"):
                call["name"] = str(call["name"]) + function["name"]
            piece = function.get("arguments")
            if isinstance(piece, str):
                call["arguments"].append(piece)  # type: ignore[attr-defined]
                self.sizes[index] = self.sizes.get(index, 0) + len(piece)
                if self.sizes[index] > MAX_HELD_BYTES:
                    from gateway.errors import PolicyDenied

                    raise PolicyDenied("The streamed tool-call arguments exceed 1 MiB; the gateway cannot judge them.")

    async def _release(self, ctx: CallContext, index: int) -> tuple[bytes, list[dict[str, object]], bool]:
        """The held calls of one choice, judged: an event with the allowed calls and the explanation (if any),
        the report of the withheld calls, and whether any call was kept."""
        held = self.held.pop(index)
        calls: list[object] = [
            {"id": c["id"], "type": "function", "function": {"name": c["name"], "arguments": "".join(c["arguments"])}}  # type: ignore[arg-type]
            for _, c in sorted(held.items())
        ]
        guardrails = self.guardrails.guardrails(ctx, "output")
        if guardrails:
            await self.guardrails.run(ctx, "output", tool_call_slots(calls), guardrails)
        verdicts: list[Verdict] = await self.governor.judge(ctx, calls)
        allowed = [v.call for v in verdicts if v.outcome == "allowed"]
        withheld = [v for v in verdicts if v.outcome != "allowed"]
        delta: dict[str, object] = {}
        if allowed:
            delta["tool_calls"] = [{"index": i, **call} for i, call in enumerate(allowed)]
        if withheld:
            delta["content"] = "\n".join(v.explanation for v in withheld)
            add_headers(ctx, withheld)
        if not delta:
            return b"", [], False
        chunk = {**self.template, "choices": [{"index": index, "delta": delta, "finish_reason": None}]}
        return b"data: " + orjson.dumps(chunk) + b"\n\n", [v.report() for v in withheld], bool(allowed)

    async def _flush_all(self, ctx: CallContext) -> bytes:
        """A stream that ended without a finish_reason still has its held calls judged (never silently dropped)."""
        out = b""
        for index in sorted(self.held):
            release, report, _ = await self._release(ctx, index)
            out += release
            if report:
                extra = {**self.template, "choices": [], "gateway": {"tool_calls": report}}
                out += b"data: " + orjson.dumps(extra) + b"\n\n"
        return out
