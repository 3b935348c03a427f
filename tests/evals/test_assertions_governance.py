"""Governance assertions read what the gateway decided for a call (its decision records, its status and error code,
its headers), not the text: blocked, redacted, warned, tool_withheld, requires_approval, allowed; shadow decisions
count only with `shadow: true`. Decisions have the shapes the guardrail and tool stages record."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from gateway.evals.assertions import evaluate, parse_assertion
from gateway.evals.observed import Observed

BLOCK_SSN = {"stage": "input", "rule": "pii-block", "policy": "default", "action": "block", "kinds": ["ssn"]}
REDACT_EMAIL = {"stage": "input", "rule": "pii-redact", "policy": "default", "action": "redact", "kinds": ["email"]}
REDACT_PHONE = {"stage": "output", "rule": "phone-redact", "policy": "default", "action": "redact", "kinds": ["phone"]}
WARN = {"stage": "input", "rule": "injection-warn", "policy": "default", "action": "warn", "kinds": ["injection"]}
ALLOW = {"stage": "input", "rule": "default", "policy": "default", "action": "allow", "kinds": []}
SHADOW_BLOCK = {**BLOCK_SSN, "rule": "strict-pii", "policy": "strict", "shadow": True}
SHADOW_REDACT = {**REDACT_PHONE, "rule": "strict-phone", "shadow": True}
SHADOW_WARN = {**WARN, "rule": "strict-warn", "shadow": True}
TOOL_DENY = {"stage": "tool", "rule": "no-shell", "policy": "tools", "action": "deny", "kinds": ["shell.exec"],
             "tool_call_id": "call_1", "risk": "high"}  # fmt: skip
TOOL_DENY_ERROR = {**TOOL_DENY, "rule": "no-rm"}
TOOL_HOLD = {"stage": "tool", "rule": "refund-large", "policy": "tools", "action": "require_approval", "risk": "high",
             "kinds": ["payments.refund"], "tool_call_id": "call_2", "approval_id": "apr_7f3c"}  # fmt: skip
TOOL_ALLOW = {**TOOL_HOLD, "rule": "refund-small", "action": "allow", "approval_id": None}
SHADOW_TOOL_DENY = {**TOOL_DENY, "rule": "strict-shell", "shadow": True}
SHADOW_HOLD = {**TOOL_HOLD, "rule": "strict-refund", "shadow": True, "approval_id": None}
# A refund released after its approval: no longer withheld.
RELEASED = {**TOOL_HOLD, "action": "released"}

DENIED = {"code": "policy_denied", "type": "permission_error", "message": "Blocked by rule pii-block."}
PENDING = {"code": "approval_required", "type": "permission_error", "message": "Needs approval apr_1."}


def call(*decisions: dict[str, Any], status: int = 200, error: dict | None = None, **headers: str) -> Observed:
    return Observed(
        request_id="req_1", status=status, text="" if error else "ok", error=error, decisions=list(decisions),
        headers={name.replace("_", "-"): value for name, value in headers.items()},
    )  # fmt: skip


REFUSED = call(BLOCK_SSN, status=403, error=DENIED)
REFUSED_NO_RECORD = call(status=403, error=DENIED)  # e.g. over HTTP without the decision record
REFUSED_BY_TOOL = call(TOOL_DENY_ERROR, status=403, error=DENIED)  # a tool rule with on_deny: error
STREAM_REFUSED = call(REDACT_EMAIL, BLOCK_SSN, status=200, error=DENIED)  # output blocked mid-stream
CLEAN = call(ALLOW, TOOL_ALLOW)
NOTHING = call()
WARNED = call(WARN)
REDACTED = call(REDACT_EMAIL, REDACT_PHONE)
SHADOWED = call(SHADOW_BLOCK, SHADOW_REDACT, SHADOW_WARN, SHADOW_TOOL_DENY, SHADOW_HOLD)
WITHHELD = call(TOOL_DENY, x_gateway_tool_calls_withheld="1")
HELD = call(TOOL_HOLD, x_gateway_tool_calls_withheld="1", x_gateway_approvals="apr_7f3c,apr_9a9a")
HEADER_ONLY = call(x_gateway_tool_calls_withheld="2", x_gateway_approvals="apr_1")
APPROVAL_ERROR = call(status=403, error=PENDING)
UPSTREAM_FAILED = call(status=502, error={"code": "provider_error", "type": "upstream_error", "message": "boom"})
AFTER_RELEASE = call(RELEASED)

CASES: list[tuple[dict[str, Any], Observed, bool]] = [
    # blocked: refused with policy_denied; a rule must be among the enforced block/deny decisions
    ({"type": "blocked"}, REFUSED, True),
    ({"type": "blocked"}, REFUSED_NO_RECORD, True),
    ({"type": "blocked"}, STREAM_REFUSED, True),
    ({"type": "blocked"}, REFUSED_BY_TOOL, True),
    ({"type": "blocked"}, CLEAN, False),
    ({"type": "blocked"}, APPROVAL_ERROR, False),
    ({"type": "blocked"}, UPSTREAM_FAILED, False),
    ({"type": "blocked"}, WITHHELD, False),  # a denied tool call withheld from a 200 answer is not a blocked call
    ({"type": "blocked", "rule": "pii-block"}, REFUSED, True),
    ({"type": "blocked", "rule": "no-rm"}, REFUSED_BY_TOOL, True),
    ({"type": "blocked", "rule": "other"}, REFUSED, False),
    ({"type": "blocked", "rule": "pii-block"}, REFUSED_NO_RECORD, False),
    ({"type": "blocked", "rule": "pii-block"}, call(BLOCK_SSN), False),  # recorded, but the call was answered
    ({"type": "blocked"}, SHADOWED, False),
    ({"type": "blocked", "shadow": True}, SHADOWED, True),
    ({"type": "blocked", "shadow": True, "rule": "strict-pii"}, SHADOWED, True),
    ({"type": "blocked", "shadow": True, "rule": "strict-shell"}, SHADOWED, True),
    ({"type": "blocked", "shadow": True, "rule": "pii-block"}, SHADOWED, False),
    ({"type": "blocked", "shadow": True}, CLEAN, False),
    ({"type": "blocked", "shadow": True, "rule": "pii-block"}, REFUSED, True),
    ({"type": "blocked", "rule": "strict-pii"}, call(SHADOW_BLOCK, status=403, error=DENIED), False),
    ({"type": "not-blocked"}, CLEAN, True),
    ({"type": "not-blocked"}, REFUSED, False),
    # redacted: any redaction, or ones covering every listed kind (all the call's redactions together)
    ({"type": "redacted"}, REDACTED, True),
    ({"type": "redacted"}, CLEAN, False),
    ({"type": "redacted"}, WARNED, False),
    ({"type": "redacted", "kinds": ["email"]}, REDACTED, True),
    ({"type": "redacted", "kinds": ["email", "phone"]}, REDACTED, True),
    ({"type": "redacted", "kinds": ["email", "ssn"]}, REDACTED, False),
    ({"type": "redacted", "kinds": ["ssn"]}, REFUSED, False),  # blocked is not redacted
    ({"type": "redacted", "rule": "pii-redact"}, REDACTED, True),
    ({"type": "redacted", "rule": "pii-redact", "kinds": ["phone"]}, REDACTED, False),
    ({"type": "redacted", "rule": "nope"}, REDACTED, False),
    ({"type": "redacted"}, SHADOWED, False),
    ({"type": "redacted", "shadow": True, "kinds": ["phone"]}, SHADOWED, True),
    ({"type": "not-redacted"}, CLEAN, True),
    ({"type": "not-redacted", "kinds": ["ssn"]}, REDACTED, True),
    # warned
    ({"type": "warned"}, WARNED, True),
    ({"type": "warned", "rule": "injection-warn"}, WARNED, True),
    ({"type": "warned", "rule": "other"}, WARNED, False),
    ({"type": "warned"}, REDACTED, False),
    ({"type": "warned"}, SHADOWED, False),
    ({"type": "warned", "shadow": True}, SHADOWED, True),
    ({"type": "not-warned"}, CLEAN, True),
    # tool_withheld: a tool decision deny/require_approval, or (without a name) the withheld header
    ({"type": "tool_withheld"}, WITHHELD, True),
    ({"type": "tool_withheld"}, HELD, True),
    ({"type": "tool_withheld"}, HEADER_ONLY, True),
    ({"type": "tool_withheld"}, call(x_gateway_tool_calls_withheld="0"), False),
    ({"type": "tool_withheld"}, call(x_gateway_tool_calls_withheld="1"), True),
    ({"type": "tool_withheld"}, call(x_gateway_tool_calls_withheld="x"), False),
    ({"type": "tool_withheld"}, CLEAN, False),
    ({"type": "tool_withheld"}, AFTER_RELEASE, False),
    ({"type": "tool_withheld"}, REFUSED, False),  # a guardrail block is not a tool decision
    ({"type": "tool_withheld", "name": "shell.exec"}, WITHHELD, True),
    ({"type": "tool_withheld", "name": "SHELL.*"}, WITHHELD, True),
    ({"type": "tool_withheld", "name": "payments.*"}, WITHHELD, False),
    ({"type": "tool_withheld", "name": "payments.refund"}, HELD, True),
    ({"type": "tool_withheld", "name": "shell.exec"}, HEADER_ONLY, False),  # the header does not say which tool
    ({"type": "tool_withheld", "name": "payments.refund"}, CLEAN, False),  # allowed
    ({"type": "tool_withheld"}, SHADOWED, False),
    ({"type": "tool_withheld", "shadow": True, "name": "shell.exec"}, SHADOWED, True),
    ({"type": "not-tool_withheld"}, CLEAN, True),
    # requires_approval: a tool decision require_approval (rule, name optional); the bare form also on the error code
    ({"type": "requires_approval"}, HELD, True),
    ({"type": "requires_approval", "rule": "refund-large"}, HELD, True),
    ({"type": "requires_approval", "rule": "refund-small"}, HELD, False),
    ({"type": "requires_approval", "name": "payments.*"}, HELD, True),
    ({"type": "requires_approval", "name": "shell.*"}, HELD, False),
    ({"type": "requires_approval", "rule": "refund-large", "name": "payments.refund"}, HELD, True),
    ({"type": "requires_approval"}, WITHHELD, False),
    ({"type": "requires_approval"}, AFTER_RELEASE, False),
    ({"type": "requires_approval"}, APPROVAL_ERROR, True),
    ({"type": "requires_approval", "rule": "refund-large"}, APPROVAL_ERROR, False),
    ({"type": "requires_approval", "name": "payments.refund"}, APPROVAL_ERROR, False),
    ({"type": "requires_approval"}, REFUSED, False),
    ({"type": "requires_approval"}, HEADER_ONLY, False),
    ({"type": "requires_approval"}, SHADOWED, False),
    ({"type": "requires_approval", "shadow": True, "rule": "strict-refund"}, SHADOWED, True),
    ({"type": "not-requires_approval"}, CLEAN, True),
    # allowed: answered, and nothing intervened (a warning or an allow decision is fine)
    ({"type": "allowed"}, CLEAN, True),
    ({"type": "allowed"}, NOTHING, True),
    ({"type": "allowed"}, WARNED, True),
    ({"type": "allowed"}, AFTER_RELEASE, True),
    ({"type": "allowed"}, REFUSED, False),
    ({"type": "allowed"}, REFUSED_NO_RECORD, False),
    ({"type": "allowed"}, STREAM_REFUSED, False),
    ({"type": "allowed"}, REDACTED, False),
    ({"type": "allowed"}, WITHHELD, False),
    ({"type": "allowed"}, HELD, False),
    ({"type": "allowed"}, UPSTREAM_FAILED, False),
    ({"type": "allowed"}, call(status=404), False),
    ({"type": "allowed"}, call(status=399), True),
    ({"type": "allowed"}, call(status=400), False),
    ({"type": "allowed"}, SHADOWED, True),
    ({"type": "allowed", "shadow": True}, SHADOWED, False),
    ({"type": "allowed", "shadow": True}, call(SHADOW_WARN), True),
    ({"type": "not-allowed"}, REDACTED, True),
]


@pytest.mark.parametrize(("spec", "seen", "passes"), CASES, ids=[f"{i}-{c[0]['type']}" for i, c in enumerate(CASES)])
async def test_governance_assertion_reads_the_decisions(spec: dict, seen: Observed, passes: bool) -> None:
    result = await evaluate(parse_assertion(spec), seen, None)  # type: ignore[arg-type]  # no context needed
    assert (result.passed, result.score, result.error) == (passes, float(passes), None), result.reason


REASONS: list[tuple[dict[str, Any], Observed, list[str]]] = [
    (
        {"type": "blocked", "rule": "pii-block"},
        CLEAN,
        [
            "expected the call blocked by rule 'pii-block'; saw status 200; decisions: input/default allow; "
            "tool/refund-small allow ['payments.refund']"
        ],
    ),
    ({"type": "blocked"}, NOTHING, ["expected the call blocked; saw status 200; decisions: none"]),
    (
        {"type": "not-blocked"},
        REFUSED,
        [
            "expected not (the call blocked); saw status 403 policy_denied ('Blocked by rule pii-block.'); "
            "decisions: input/pii-block block ['ssn']"
        ],
    ),
    (
        {"type": "blocked", "shadow": True},
        SHADOWED,
        ["blocked, shadow decisions included", "strict-pii block ['ssn'] (shadow)"],
    ),
    (
        {"type": "redacted", "kinds": ["email", "ssn", "card"]},
        REDACTED,
        ["expected a redaction of email, ssn, card;", "(no redaction of card, ssn)"],
    ),
    ({"type": "redacted", "kinds": ["ssn"]}, CLEAN, ["saw status 200; decisions: input/default allow; tool/"]),
    ({"type": "redacted", "rule": "r"}, CLEAN, ["expected a redaction by rule 'r';"]),
    ({"type": "warned", "rule": "w"}, CLEAN, ["expected a warning by rule 'w'; saw"]),
    ({"type": "tool_withheld", "name": "shell.*"}, CLEAN, ["expected a tool call 'shell.*' withheld; saw status 200"]),
    ({"type": "tool_withheld"}, HEADER_ONLY, ["expected a tool call withheld;", "; x-gateway-tool-calls-withheld: 2"]),
    (
        {"type": "requires_approval"},
        HELD,
        [
            "expected a tool call held for approval; saw",
            "refund-large require_approval ['payments.refund']",
            "; approvals: apr_7f3c, apr_9a9a",
        ],
    ),
    (
        {"type": "requires_approval", "name": "x", "rule": "y"},
        NOTHING,
        ["expected a tool call 'x' held for approval by rule 'y'; saw status 200; decisions: none"],
    ),
    (
        {"type": "allowed"},
        REDACTED,
        [
            "expected the call answered with no block, redaction, denial or approval hold; saw"
            " status 200; decisions: input/pii-redact redact ['email']; output/phone-redact"
        ],
    ),
    ({"type": "allowed"}, call(*[WARN] * 30), ["... (", " chars)"]),  # a long record list is cut
]


@pytest.mark.parametrize(("spec", "seen", "parts"), REASONS, ids=[f"{i}-{c[0]['type']}" for i, c in enumerate(REASONS)])
async def test_governance_reason_names_the_expectation_and_the_decisions(
    spec: dict, seen: Observed, parts: list
) -> None:
    result = await evaluate(parse_assertion(spec), seen, None)  # type: ignore[arg-type]
    for part in parts:
        assert part in result.reason


async def test_a_decision_without_the_usual_fields_is_shown_and_never_crashes() -> None:
    odd = call({"action": "block"}, {"stage": "tool", "action": "deny", "kinds": None}, status=403, error=DENIED)
    for spec in ({"type": "blocked"}, {"type": "redacted", "kinds": ["x"]}, {"type": "tool_withheld", "name": "a"},
                 {"type": "requires_approval"}, {"type": "allowed"}):  # fmt: skip
        result = await evaluate(parse_assertion(spec), odd, None)  # type: ignore[arg-type]
        assert result.error is None
    assert "decisions: ?/? block; tool/? deny" in result.reason


EXACT: list[tuple[dict[str, Any], Observed, str]] = [
    ({"type": "redacted", "kinds": ["ssn"]}, NOTHING, "expected a redaction of ssn; saw status 200; decisions: none"),
    ({"type": "tool_withheld"}, NOTHING, "expected a tool call withheld; saw status 200; decisions: none"),
    ({"type": "tool_withheld"}, call(x_gateway_tool_calls_withheld="0"),
     "expected a tool call withheld; saw status 200; decisions: none"),
    ({"type": "requires_approval"}, call(TOOL_HOLD),
     "expected a tool call held for approval; saw status 200; decisions: "
     "tool/refund-large require_approval ['payments.refund']; approvals: apr_7f3c"),
    ({"type": "blocked"}, call({"rule": "r"}), "expected the call blocked; saw status 200; decisions: ?/r ?"),
    ({"type": "blocked"}, call({"rule": "r" * 296}),  # 300 characters of records: shown whole
     f"expected the call blocked; saw status 200; decisions: ?/{'r' * 296} ?"),
    ({"type": "blocked"}, call({"rule": "r" * 297}),
     f"expected the call blocked; saw status 200; decisions: ?/{'r' * 297} ... (301 chars)"),
]  # fmt: skip


@pytest.mark.parametrize(("spec", "seen", "reason"), EXACT, ids=[f"{i}-{c[0]['type']}" for i, c in enumerate(EXACT)])
async def test_governance_reason_in_full(spec: dict, seen: Observed, reason: str) -> None:
    result = await evaluate(parse_assertion(spec), seen, None)  # type: ignore[arg-type]
    assert result.reason == reason


@pytest.mark.parametrize(
    ("spec", "field"),
    [({"type": kind, field: ""}, field) for kind, field in
     (("blocked", "rule"), ("redacted", "rule"), ("warned", "rule"), ("tool_withheld", "name"),
      ("requires_approval", "rule"), ("requires_approval", "name"))]
    + [({"type": "redacted", "kinds": []}, "kinds")],
)  # fmt: skip
def test_governance_fields_refuse_empty_values_and_take_short_ones(spec: dict, field: str) -> None:
    with pytest.raises(ValidationError) as raised:
        parse_assertion(spec)
    assert [error["loc"] for error in raised.value.errors()] == [(spec["type"], field)]
    short = {**spec, field: ["x"] if field == "kinds" else "x"}
    assert getattr(parse_assertion(short), field) == short[field]
