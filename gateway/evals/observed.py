"""What one call to a target produced, as every assertion reads it, and what an assertion concludes.

`Observed` is filled by the runner's clients (in process from the CallContext, over HTTP from the response and the
call's decision record); assertions never see the transport. Decisions are the gateway's own records of the call
(`CallContext.decisions`): guardrails give {"stage", "rule", "policy", "action", "kinds", "shadow"?}, tool rules give
{"stage": "tool", "rule", "action": allow|deny|require_approval|released, "kinds": [tool name], "tool_call_id",
"risk", "approval_id"?}.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(slots=True)
class ToolCall:
    name: str
    arguments: Any  # the parsed JSON arguments, or the raw string when they are not valid JSON
    id: str = ""


@dataclass(slots=True)
class Observed:
    """One attempt of one case against one target."""

    request_id: str
    status: int  # HTTP status: 200, or the error's
    text: str = ""  # the first choice's message content (a stream: its deltas joined); "" when none
    tool_calls: list[ToolCall] = field(default_factory=list)  # the tool calls the client received (not withheld ones)
    finish_reason: str | None = None
    error: dict[str, Any] | None = None  # the OpenAI-shaped error object {"message", "type", "code", "param"}
    latency_ms: float = 0.0  # the call as the runner timed it
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0  # the target call's cost as the gateway priced it
    decisions: list[dict[str, Any]] = field(default_factory=list)
    headers: dict[str, str] = field(default_factory=dict)  # response headers, lower-case names
    body: dict[str, Any] | None = None  # the whole JSON answer (non-stream), for json-path style assertions
    model: str = ""  # the model that answered (the deployment's public name)
    prompt_version: int | None = None  # the registry prompt version rendered, if any
    cached: bool = False  # came from the runner's response cache or a cassette


@dataclass(slots=True)
class AssertionResult:
    type: str  # the assertion's type as written, "not-" prefix included
    passed: bool
    score: float  # 0..1; deterministic assertions give 0 or 1
    reason: str  # what was expected and what was seen, for the reports
    weight: float = 1.0
    error: str | None = None  # the assertion could not be evaluated (a judge's garbage verdict): not a pass
    metric: str | None = None  # a named metric this score feeds (its mean is reported per run)
    cost_usd: float = 0.0  # what evaluating it cost (a judge call), counted apart from the target's cost

    def as_json(self) -> dict[str, Any]:
        return {
            "type": self.type, "passed": self.passed, "score": round(self.score, 6), "weight": self.weight,
            "reason": self.reason, "error": self.error, "metric": self.metric,
        }  # fmt: skip
