"""The tool-call stage: judges the tool calls in answers (JSON and streams), refuses tool results for withheld
calls, and answers resume requests with approved calls."""

from __future__ import annotations

from collections.abc import Awaitable

import orjson

from gateway.approvals import resume
from gateway.approvals.service import ApprovalService
from gateway.calls.context import CallContext
from gateway.errors import InvalidRequest, PolicyDenied
from gateway.pipeline.hooks import BaseHook
from gateway.policy.guardrails import GuardrailEngine
from gateway.providers.base import Reply
from gateway.toolcalls.governor import ToolGovernor, apply_verdicts
from gateway.toolcalls.results import ToolResultCheck
from gateway.toolcalls.stream import ToolStream


class ToolCallHook(BaseHook):
    name = "tool_calls"

    def __init__(self, governor: ToolGovernor, approvals: ApprovalService, guardrails: GuardrailEngine) -> None:
        self.governor = governor
        self.approvals = approvals
        self.guardrails = guardrails
        self.results = ToolResultCheck(governor, approvals)

    async def before_request(self, ctx: CallContext) -> None:
        if ctx.operation != "chat":
            return
        if ctx.body.get(resume.FIELD) is not None:
            await self.resume(ctx)
            return
        ctx.body.pop(resume.FIELD, None)  # an explicit null: not resuming, and not for the upstream
        if not self.governor.governs(ctx):
            return
        if "functions" in ctx.body:
            raise InvalidRequest(
                "The deprecated `functions` parameter cannot be governed by tool rules; send the same definitions "
                'as `tools` (each {"type": "function", "function": {...}}).',
                param="functions",
            )
        await self.results.check(ctx)
        if ctx.stream:  # with or without `tools` in the request: a model may emit calls regardless
            ctx.tool_stream = ToolStream(self.governor, self.guardrails)

    async def on_stream_chunk(self, ctx: CallContext, event: bytes) -> bytes:
        stream = ctx.tool_stream
        return await stream.on_event(ctx, event) if stream is not None else event

    def after_response(self, ctx: CallContext, reply: Reply | None) -> Awaitable[None] | None:
        if reply is None or ctx.answer is not None or not has_tool_calls(reply.data):
            return None  # the parsed answer is checked, not its bytes: an escaped key ("tool\\u005fcalls") counts too
        if not self.governor.governs(ctx):
            return None
        return self._judge(ctx, reply)

    async def _judge(self, ctx: CallContext, reply: Reply) -> None:
        report: list[dict[str, object]] = []
        for choice in reply.data.get("choices") or ():  # type: ignore[attr-defined]
            message = choice.get("message") if isinstance(choice, dict) else None
            calls = message.get("tool_calls") if isinstance(message, dict) else None
            if not calls or not isinstance(calls, list):
                continue
            verdicts = await self.governor.judge(ctx, calls)
            report += apply_verdicts(ctx, choice, message, verdicts)  # type: ignore[arg-type]
        if report:
            reply.data["gateway"] = {"tool_calls": report}
            reply.body = orjson.dumps(reply.data)

    async def resume(self, ctx: CallContext) -> None:
        """Answers the call with the approved tool calls; the upstream is not called."""
        ids = resume.requested_ids(ctx.body)
        assert ids is not None and ctx.principal is not None
        if (reason := self.governor.suspension(ctx)) is not None:
            raise PolicyDenied(f"Tool calls are suspended {reason}; nothing is released.")
        self.governor.rules(ctx)  # the policy set in force now: a release needs the one the approval was bound to
        rows = await self.approvals.release(
            ids, ctx.principal, policy_sha256=self.governor.store.current.sha256, request_id=ctx.request_id
        )
        ctx.answer = resume.released_reply(rows, request_id=ctx.request_id)
        if ctx.stream:
            options = ctx.body.get("stream_options")
            include_usage = isinstance(options, dict) and options.get("include_usage") is True
            ctx.answer_events = resume.released_events(rows, request_id=ctx.request_id, include_usage=include_usage)
        ctx.decisions = (ctx.decisions or []) + [
            {
                "rule": row.rule_id,
                "policy": row.policy,
                "stage": "tool",
                "action": "released",
                "kinds": [row.tool_name],
                "tool_call_id": row.tool_call_id,
                "approval_id": row.id,
                "risk": row.risk,
            }  # fmt: skip
            for row in rows
        ]


def has_tool_calls(data: dict[str, object]) -> bool:
    for choice in data.get("choices") or ():  # type: ignore[attr-defined]
        message = choice.get("message") if isinstance(choice, dict) else None
        if isinstance(message, dict) and message.get("tool_calls"):
            return True
    return False
