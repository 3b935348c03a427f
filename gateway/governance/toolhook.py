"""The tool-call stage: judges the tool calls in answers (JSON and streams), refuses tool results for withheld
calls, and answers resume requests with approved calls."""

from __future__ import annotations

import orjson

from gateway.approvals import resume
from gateway.approvals.service import ApprovalService, requester_id
from gateway.errors import InvalidRequest, PolicyDenied
from gateway.governance.engine import InvalidArguments, canonical_json, parse_arguments
from gateway.governance.guardrails import GuardrailEngine
from gateway.governance.toolcalls import ToolGovernor, apply_verdicts, as_tool_call
from gateway.governance.toolstream import ToolStream
from gateway.pipeline.context import CallContext
from gateway.pipeline.hooks import BaseHook
from gateway.providers.base import Reply


class ToolCallHook(BaseHook):
    name = "tool_calls"

    def __init__(self, governor: ToolGovernor, approvals: ApprovalService, guardrails: GuardrailEngine) -> None:
        self.governor = governor
        self.approvals = approvals
        self.guardrails = guardrails

    async def before_request(self, ctx: CallContext) -> None:
        if ctx.operation != "chat":
            return
        if resume.FIELD in ctx.body:
            await self.resume(ctx)
            return
        if not self.governor.governs(ctx):
            return
        if "functions" in ctx.body:
            raise InvalidRequest(
                "The deprecated `functions` parameter cannot be governed by tool rules; send the same definitions "
                'as `tools` (each {"type": "function", "function": {...}}).',
                param="functions",
            )
        await self.check_tool_results(ctx)
        if ctx.stream and ctx.body.get("tools"):
            ctx.tool_stream = ToolStream(self.governor, self.guardrails, ctx)

    async def on_stream_chunk(self, ctx: CallContext, event: bytes) -> bytes:
        stream = ctx.tool_stream
        return await stream.on_event(event) if stream is not None else event

    async def after_response(self, ctx: CallContext, reply: Reply | None) -> None:
        if reply is None or ctx.answer is not None or b'"tool_calls"' not in reply.body:
            return
        if not self.governor.governs(ctx):
            return
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
            raise PolicyDenied(f"Tool calls are suspended for this key ({reason}); nothing is released.")
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

    async def check_tool_results(self, ctx: CallContext) -> None:
        """A `tool` message may answer only a call the gateway released: one the policy allows now, or one
        released by an approval for exactly this key, tool and arguments. Raises InvalidRequest (400) otherwise."""
        messages = ctx.body.get("messages")
        asked: dict[str, object] = {}
        for i, message in enumerate(messages if isinstance(messages, list) else ()):
            if not isinstance(message, dict):
                continue
            role = message.get("role")
            if role == "assistant" and isinstance(message.get("tool_calls"), list):
                for call in message["tool_calls"]:
                    call_id = call.get("id") if isinstance(call, dict) else None
                    if isinstance(call_id, str):
                        asked[call_id] = call
            elif role == "tool" and isinstance(message.get("tool_call_id"), str):
                call = asked.get(message["tool_call_id"])
                if call is not None:  # a result for a call never asked for is the upstream's to refuse
                    await self._check_result(ctx, i, call)

    async def _check_result(self, ctx: CallContext, index: int, call: object) -> None:
        tool_call = as_tool_call(call)
        decision = self.governor.decide(ctx, tool_call, record=False, kill_switch=False)
        if decision is None or decision.action == "allow":
            return
        where = f"messages[{index}]"
        if decision.action == "deny":
            raise InvalidRequest(
                f"{where} is a tool result for call {tool_call.id} ({tool_call.name!r}), which the gateway withheld: "
                f"{decision.message}",
                param=f"{where}.tool_call_id",
                code="tool_call_withheld",
            )
        assert ctx.principal is not None
        key_id = requester_id(ctx.principal)
        try:
            canonical = canonical_json(parse_arguments(tool_call.arguments))
        except InvalidArguments:
            canonical = ""
        if await self.approvals.was_released(key_id, tool_call.id, tool_call.name, canonical):
            return
        latest = await self.approvals.status_of_call(key_id, tool_call.id)
        if latest is None:
            why = "no approval released it"
        elif latest.status == "executed":
            why = f"its arguments differ from the ones approved in {latest.id}; a changed argument needs a new approval"
        elif latest.status == "approved":
            why = f"approval {latest.id} is approved but was not released; resume it first"
        else:
            why = f"approval {latest.id} is {latest.status}"
        raise InvalidRequest(
            f"{where} is a tool result for call {tool_call.id} ({tool_call.name!r}), which needs approval: {why}.",
            param=f"{where}.tool_call_id",
            code="tool_call_withheld",
        )
