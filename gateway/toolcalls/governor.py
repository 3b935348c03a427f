"""ToolGovernor: what happens to each tool call a model asked for (pass, withhold and explain, or hold for approval).

A response's `tool_calls` are judged with the policy set's tool rules (governance/engine.py) and the kill
switch. Allowed calls pass unchanged. A denied call is removed and replaced by an explanation appended to the
message content (or, with `on_deny: error`, the whole response becomes a 403). A call that needs approval is
removed too, becomes a pending approval (approvals/service.py) and is explained the same way; the response
also says so in an extension field and headers (see README, "Agent tool calls and approvals"):

    "gateway": {"tool_calls": [{"id": "call_1", "name": "refund", "action": "pending_approval",
                                "rule": "big-refunds", "message": "...", "approval": {...approval json...}}]}
    x-gateway-approvals: apr_...            (the pending approvals, comma-separated)
    x-gateway-tool-calls-withheld: 1

When a choice keeps no call, its finish_reason becomes "stop", so agent loops do not look for calls that are
not there.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Literal

from gateway.approvals.killswitch import ToolSwitch
from gateway.approvals.service import ApprovalService
from gateway.approvals.views import approval_json
from gateway.calls.context import CallContext
from gateway.errors import PolicyDenied
from gateway.policy.loader import NO_KEY
from gateway.policy.store import PolicyStore
from gateway.storage.tables import ApprovalRequest
from gateway.toolcalls.engine import Caller, ToolCall, ToolDecision, combine, evaluate
from gateway.toolcalls.rules import CompiledToolRules

log = logging.getLogger("gateway.tools")
KILL_SWITCH_RULE_ID = "kill-switch"
APPROVAL_UNAVAILABLE_RULE_ID = "approval-unavailable"
Outcome = Literal["allowed", "denied", "pending_approval"]


@dataclass(slots=True)
class Verdict:
    call: dict[str, object]  # the call as the model sent it (id, type, function: {name, arguments})
    outcome: Outcome
    decision: ToolDecision | None = None
    approval: ApprovalRequest | None = None

    @property
    def explanation(self) -> str:
        call_id = self.call.get("id")
        message = (self.decision.message if self.decision else None) or "The tool call was withheld."
        if self.approval is not None:
            return (
                f"[gateway] {message} The call {call_id} is held as approval {self.approval.id} until an approver "
                f"decides (it expires at {self.approval.expires_at.isoformat()}); once approved, it is released "
                f'to a request with "resume_approvals": ["{self.approval.id}"].'
            )
        return f"[gateway] {message} The call {call_id} was withheld."

    def report(self) -> dict[str, object]:
        function = self.call.get("function")
        name = function.get("name") if isinstance(function, dict) else None
        entry: dict[str, object] = {"id": self.call.get("id"), "name": name, "action": self.outcome}
        if self.decision is not None:
            entry["rule"] = self.decision.rule_id
            entry["risk"] = self.decision.risk
        entry["message"] = self.explanation
        if self.approval is not None:
            entry["approval"] = approval_json(self.approval)
        return entry


def as_tool_call(call: object) -> ToolCall:
    """An OpenAI tool_calls entry as the engine's ToolCall; a malformed entry gets arguments that deny."""
    function = call.get("function") if isinstance(call, dict) else None
    name = function.get("name") if isinstance(function, dict) else None
    arguments = function.get("arguments") if isinstance(function, dict) else None
    call_id = call.get("id") if isinstance(call, dict) else None
    return ToolCall(
        name=name if isinstance(name, str) else "",
        arguments=arguments if isinstance(arguments, str) else "\x00not a string",
        id=call_id if isinstance(call_id, str) else "",
    )


class ToolGovernor:
    def __init__(
        self, store: PolicyStore, approvals: ApprovalService | None = None, switch: ToolSwitch | None = None
    ) -> None:
        """Without approvals and a switch (`gateway policy test`), it decides but holds nothing."""
        self.store = store
        self.approvals = approvals
        self.switch = switch

    def rules(self, ctx: CallContext) -> tuple[CompiledToolRules, ...]:
        policies = self.store.current
        if policies.empty:
            return ()
        key = ctx.principal.key if ctx.principal else None
        rules = policies.tool_rules_for(
            key=key.aliases if key else NO_KEY,
            team=(key.team_id, key.team_name) if key else (None, None),
            model=ctx.model,
            route=ctx.operation,
        )
        if rules:
            ctx.policy_sha256 = policies.sha256
        return rules

    def governs(self, ctx: CallContext) -> bool:
        """Whether this call's tool calls need judging at all: tool rules apply, or its tools are suspended."""
        return bool(self.rules(ctx)) or self.suspension(ctx) is not None

    def suspension(self, ctx: CallContext) -> str | None:
        principal = ctx.principal
        if self.switch is None:
            return None
        row = self.switch.suspended(principal.key_id if principal else None)
        if row is None:
            return None
        who = "every key" if row.scope == "all" else "this key"
        return f"for {who}: {row.reason}" if row.reason else f"for {who}, by {row.suspended_by}"

    def decide(
        self, ctx: CallContext, call: ToolCall, *, record: bool = True, kill_switch: bool = True
    ) -> ToolDecision | None:
        """The governing decision on one call (None: no tool rules apply, so it passes). Shadow decisions and
        the governing one are added to the call's decisions when `record`."""
        if kill_switch and (reason := self.suspension(ctx)) is not None:
            decision = ToolDecision(
                action="deny", rule_id=KILL_SWITCH_RULE_ID, risk="high", tool_name=call.name, call_id=call.id,
                canonical_arguments=None, message=f"Tool calls are suspended {reason}.",
            )  # fmt: skip
            if record:
                self._record(ctx, [decision])
            return decision
        rules = self.rules(ctx)
        if not rules:
            return None
        principal = ctx.principal
        key = principal.key if principal else None
        caller = Caller(
            key_id=(principal.key_id if principal else None) or "master",
            team_id=principal.team_id if principal else None,
            team_name=key.team_name if key else None,
            role=principal.role if principal else None,
            model=ctx.model,
        )
        decisions = [evaluate(tool_rules, call, caller) for tool_rules in rules]
        winner = combine(decisions)
        if record:
            self._record(ctx, [d for d in decisions if d.shadow] + ([winner] if winner else []))
        return winner

    async def judge(self, ctx: CallContext, calls: list[object]) -> list[Verdict]:
        """One verdict per call; pending approvals are created here. Raises PolicyDenied when a denial's policy
        says on_deny: error (checked before any approval is created)."""
        decided = [(call, self.decide(ctx, as_tool_call(call))) for call in calls]
        for _, decision in decided:
            if decision is not None and decision.action == "deny" and decision.on_deny == "error":
                raise PolicyDenied(
                    f"{decision.message} [rule {decision.rule_id}; policy set {(ctx.policy_sha256 or '')[:12]}]"
                )
        verdicts = []
        for call, decision in decided:
            if decision is None or decision.action == "allow":
                verdicts.append(Verdict(call, "allowed", decision))  # type: ignore[arg-type]
            elif decision.action == "deny":
                verdicts.append(Verdict(call, "denied", decision))  # type: ignore[arg-type]
            else:
                verdicts.append(await self._hold(ctx, call, decision))  # type: ignore[arg-type]
        return verdicts

    async def _hold(self, ctx: CallContext, call: dict[str, object], decision: ToolDecision) -> Verdict:
        assert ctx.principal is not None and self.approvals is not None
        try:
            approval = await self.approvals.create(
                decision, arguments=as_tool_call(call).arguments, principal=ctx.principal, model=ctx.model,
                request_id=ctx.request_id, policy_sha256=ctx.policy_sha256 or "",
            )  # fmt: skip
        except Exception:  # fail closed: a call that cannot be held durably is not released either
            log.exception("could not record an approval for %s; withholding the call", ctx.request_id)
            failed = ToolDecision(
                action="deny", rule_id=APPROVAL_UNAVAILABLE_RULE_ID, risk=decision.risk, tool_name=decision.tool_name,
                call_id=decision.call_id, canonical_arguments=decision.canonical_arguments, policy=decision.policy,
                message=f"{decision.message} The approval could not be recorded, so the call is withheld; retry later.",
            )  # fmt: skip
            return Verdict(call, "denied", failed)
        for entry in reversed(ctx.decisions or []):
            if entry.get("tool_call_id") == decision.call_id and entry.get("stage") == "tool":
                entry["approval_id"] = approval.id
                break
        return Verdict(call, "pending_approval", decision, approval)

    def _record(self, ctx: CallContext, decisions: list[ToolDecision]) -> None:
        if ctx.decisions is None:
            ctx.decisions = []
        for d in decisions:
            entry: dict[str, object] = {"rule": d.rule_id, "policy": d.policy, "stage": "tool", "action": d.action,
                                        "kinds": [d.tool_name], "tool_call_id": d.call_id, "risk": d.risk}  # fmt: skip
            if d.shadow:
                entry["shadow"] = True
            ctx.decisions.append(entry)


def apply_verdicts(
    ctx: CallContext, choice: dict[str, object], message: dict[str, object], verdicts: list[Verdict]
) -> list[dict[str, object]]:
    """Rewrites one choice's message in place: withheld calls removed and explained. Returns the report entries."""
    withheld = [v for v in verdicts if v.outcome != "allowed"]
    if not withheld:
        return []
    kept = [v.call for v in verdicts if v.outcome == "allowed"]
    if kept:
        message["tool_calls"] = kept
    else:
        message.pop("tool_calls", None)
        if choice.get("finish_reason") == "tool_calls":
            choice["finish_reason"] = "stop"
    text = "\n".join(v.explanation for v in withheld)
    content = message.get("content")
    message["content"] = f"{content}\n\n{text}" if isinstance(content, str) and content else text
    add_headers(ctx, withheld)
    return [v.report() for v in withheld]


def add_headers(ctx: CallContext, withheld: list[Verdict]) -> None:
    headers = dict(ctx.response_headers or {})
    pending = [v.approval.id for v in withheld if v.approval is not None]
    if pending:
        before = headers.get("x-gateway-approvals")
        headers["x-gateway-approvals"] = ",".join(([before] if before else []) + pending)
    count = int(headers.get("x-gateway-tool-calls-withheld", "0")) + len(withheld)
    headers["x-gateway-tool-calls-withheld"] = str(count)
    ctx.response_headers = headers
