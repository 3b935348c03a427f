"""Which tool results a conversation may carry back to the model, where tool rules apply.

A `tool` message may answer only a call the gateway released: one the policy allows now (and no kill switch
stops), or one released by an approval for exactly this key, tool and arguments. Conversations that could
hide a result from this check are refused too: two calls with one id, a result before its call or for a call
never asked for, a non-string `tool_call_id`, and legacy `function` messages. Every refusal is a 400
`tool_call_withheld` naming the message.
"""

from __future__ import annotations

from gateway.approvals.service import ApprovalService, requester_id
from gateway.calls.context import CallContext
from gateway.errors import InvalidRequest
from gateway.toolcalls.engine import InvalidArguments, canonical_json, parse_arguments
from gateway.toolcalls.governor import ToolGovernor, as_tool_call


def refuse(where: str, message: str, field: str = "tool_call_id") -> InvalidRequest:
    return InvalidRequest(f"{where} {message}", param=f"{where}.{field}", code="tool_call_withheld")


class ToolResultCheck:
    def __init__(self, governor: ToolGovernor, approvals: ApprovalService) -> None:
        self.governor = governor
        self.approvals = approvals

    async def check(self, ctx: CallContext) -> None:
        """Raises InvalidRequest (400) for the first tool result the gateway did not release."""
        messages = ctx.body.get("messages")
        asked: dict[str, object] = {}
        for i, message in enumerate(messages if isinstance(messages, list) else ()):
            if not isinstance(message, dict):
                continue
            where, role = f"messages[{i}]", message.get("role")
            if role == "assistant" and message.get("tool_calls") is not None:
                calls = message["tool_calls"]
                for call in calls if isinstance(calls, list) else ():
                    call_id = call.get("id") if isinstance(call, dict) else None
                    if not isinstance(call_id, str) or call_id in asked:
                        raise refuse(where, f"repeats or lacks a tool call id ({call_id!r}); each call needs its own.",
                                     "tool_calls")  # fmt: skip
                    asked[call_id] = call
            elif role == "function":
                raise refuse(where, "is a legacy function result; where tool rules apply, use tools and tool messages.",
                             "role")  # fmt: skip
            elif role == "tool":
                call_id = message.get("tool_call_id")
                if not isinstance(call_id, str) or call_id not in asked:
                    raise refuse(where, f"answers tool call {call_id!r}, which no earlier assistant message asked for.")
                await self._check_result(ctx, where, asked[call_id])

    async def _check_result(self, ctx: CallContext, where: str, call: object) -> None:
        tool_call = as_tool_call(call)
        decision = self.governor.decide(ctx, tool_call, record=False)
        if decision is None or decision.action == "allow":
            return
        label = f"is a tool result for call {tool_call.id} ({tool_call.name!r})"
        if decision.action == "deny":
            raise refuse(where, f"{label}, which the gateway withheld: {decision.message}")
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
        raise refuse(where, f"{label}, which needs approval: {why}.")
