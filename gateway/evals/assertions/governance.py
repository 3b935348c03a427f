"""Governance assertions: what the gateway decided for the call (blocked, redacted, warned, a tool call withheld or
held for approval, or nothing at all), read from its decision records and its answer, never from the text.

Decisions are `Observed.decisions` (see gateway/evals/observed.py for their shapes). A policy in shadow mode records
what it would have done without doing it: those records are ignored unless the assertion says `shadow: true`, and
then they count as if enforced (a suite can prove a policy bites before it is switched on).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any, Literal

from pydantic import Field, PrivateAttr

from gateway.evals.assertions.base import Assertion, Outcome, failure, held, shorten
from gateway.evals.observed import Observed
from gateway.toolcalls.rules import glob_pattern

Record = dict[str, Any]
REFUSED = "policy_denied"  # the error code of a call a policy blocked (gateway/errors.py PolicyDenied)
PENDING = "approval_required"  # the error code of a call refused until a human approves (ApprovalRequired)
WITHHELD_HEADER = "x-gateway-tool-calls-withheld"
APPROVALS_HEADER = "x-gateway-approvals"
INTERVENTIONS = frozenset({"block", "redact", "deny", "require_approval"})


class GovernanceAssertion(Assertion):
    uses = frozenset({"decisions"})
    shadow: bool = Field(default=False, description="count the decisions of policies in shadow mode as enforced")

    def decisions(self, observed: Observed, *, actions: Iterable[str], rule: str | None = None) -> list[Record]:
        """The call's decisions with one of `actions` (and this rule id, when given); shadow ones only if asked."""
        wanted = frozenset(actions)
        return [
            d for d in observed.decisions
            if d.get("action") in wanted and (rule is None or d.get("rule") == rule)
            and (self.shadow or not d.get("shadow"))
        ]  # fmt: skip

    def _also(self) -> str:
        return ", shadow decisions included" if self.shadow else ""


def error_code(observed: Observed) -> str | None:
    return None if observed.error is None else observed.error.get("code")


def summary(observed: Observed) -> str:
    """The call as a reason shows it: its status (and error), then its decisions."""
    head = f"status {observed.status}" if observed.error is None else f"status {failure(observed)}"
    records = [
        f"{d.get('stage', '?')}/{d.get('rule', '?')} {d.get('action', '?')}"
        + (f" {list(d['kinds'])}" if d.get("kinds") else "") + (" (shadow)" if d.get("shadow") else "")
        for d in observed.decisions
    ]  # fmt: skip
    return f"{head}; decisions: {shorten('; '.join(records), 300) if records else 'none'}"


def _rule(rule: str | None) -> str:
    return f" by rule {rule!r}" if rule is not None else ""


class Blocked(GovernanceAssertion):
    """The call was refused by policy (403 policy_denied, or that error mid-stream); with `rule`, that rule's block
    or deny decision is among the call's decisions. With `shadow: true`, a shadow policy's block counts too."""

    type: Literal["blocked", "not-blocked"]
    rule: str | None = Field(default=None, min_length=1, description="the rule id that must have blocked it")

    def expectation(self) -> str:
        return f"the call blocked{_rule(self.rule)}{self._also()}"

    def check(self, observed: Observed) -> Outcome:
        refused = error_code(observed) == REFUSED
        found = self.decisions(observed, actions=("block", "deny"), rule=self.rule)
        would = any(d.get("shadow") for d in found)  # shadow decisions are found only with shadow: true
        return held((refused and (self.rule is None or bool(found))) or would, summary(observed))


class Redacted(GovernanceAssertion):
    """A redact decision (by `rule`, when given) took out text of every kind listed in `kinds` (any kind when
    omitted); the kinds of all the call's redactions count together."""

    type: Literal["redacted", "not-redacted"]
    kinds: list[str] | None = Field(default=None, min_length=1, description='e.g. ["ssn", "email"]')
    rule: str | None = Field(default=None, min_length=1)

    def expectation(self) -> str:
        kinds = f" of {', '.join(self.kinds)}" if self.kinds else ""
        return f"a redaction{kinds}{_rule(self.rule)}{self._also()}"

    def check(self, observed: Observed) -> Outcome:
        found = self.decisions(observed, actions=("redact",), rule=self.rule)
        redacted = {str(kind) for d in found for kind in d.get("kinds") or ()}
        missing = sorted(set(self.kinds or ()) - redacted)
        seen = summary(observed) + (f" (no redaction of {', '.join(missing)})" if found and missing else "")
        return held(bool(found) and not missing, seen)


class Warned(GovernanceAssertion):
    """A warn decision (by `rule`, when given) was recorded: the call went through, flagged."""

    type: Literal["warned", "not-warned"]
    rule: str | None = Field(default=None, min_length=1)

    def expectation(self) -> str:
        return f"a warning{_rule(self.rule)}{self._also()}"

    def check(self, observed: Observed) -> Outcome:
        return held(bool(self.decisions(observed, actions=("warn",), rule=self.rule)), summary(observed))


class ToolNamed(GovernanceAssertion):
    name: str | None = Field(default=None, min_length=1, description="tool name glob, e.g. shell.*")
    _name: re.Pattern[str] | None = PrivateAttr()

    def model_post_init(self, context: Any, /) -> None:
        self._name = glob_pattern([self.name], ignore_case=True) if self.name is not None else None

    def tool_decisions(self, observed: Observed, *, actions: Iterable[str], rule: str | None = None) -> list[Record]:
        return [
            d for d in self.decisions(observed, actions=actions, rule=rule)
            if d.get("stage") == "tool"
            and (self._name is None or any(self._name.fullmatch(str(k)) for k in d.get("kinds") or ()))
        ]  # fmt: skip

    def _tool(self) -> str:
        return f" {self.name!r}" if self.name is not None else ""


class ToolWithheld(ToolNamed):
    """A tool call the model made (named `name`, when given) did not reach the client: denied or held for approval
    (its tool decision, or without `name` the x-gateway-tool-calls-withheld header)."""

    type: Literal["tool_withheld", "not-tool_withheld"]

    def expectation(self) -> str:
        return f"a tool call{self._tool()} withheld{self._also()}"

    def check(self, observed: Observed) -> Outcome:
        found = self.tool_decisions(observed, actions=("deny", "require_approval"))
        header = observed.headers.get(WITHHELD_HEADER, "0")
        counted = self.name is None and header.isdigit() and int(header) > 0
        seen = summary(observed) + (f"; {WITHHELD_HEADER}: {header}" if header != "0" else "")
        return held(bool(found) or counted, seen)


class RequiresApproval(ToolNamed):
    """A tool call (named `name`, when given) was held for a human's approval (by `rule`, when given); the reason
    names the pending approval ids."""

    type: Literal["requires_approval", "not-requires_approval"]
    rule: str | None = Field(default=None, min_length=1)

    def expectation(self) -> str:
        return f"a tool call{self._tool()} held for approval{_rule(self.rule)}{self._also()}"

    def check(self, observed: Observed) -> Outcome:
        found = self.tool_decisions(observed, actions=("require_approval",), rule=self.rule)
        ids = [str(d["approval_id"]) for d in found if d.get("approval_id")]
        header = observed.headers.get(APPROVALS_HEADER, "")
        ids += [i for i in (part.strip() for part in header.split(",")) if i and i not in ids]
        seen = summary(observed) + (f"; approvals: {', '.join(ids)}" if ids else "")
        return held(bool(found) or (self.is_bare and error_code(observed) == PENDING), seen)

    @property
    def is_bare(self) -> bool:
        return self.rule is None and self.name is None


class Allowed(GovernanceAssertion):
    """The call was answered and no policy intervened: no block, redaction, tool denial or approval hold (a warning
    is allowed)."""

    type: Literal["allowed", "not-allowed"]

    def expectation(self) -> str:
        return f"the call answered with no block, redaction, denial or approval hold{self._also()}"

    def check(self, observed: Observed) -> Outcome:
        answered = observed.error is None and observed.status < 400
        return held(answered and not self.decisions(observed, actions=INTERVENTIONS), summary(observed))


GOVERNANCE = (Blocked, Redacted, Warned, ToolWithheld, RequiresApproval, Allowed)
