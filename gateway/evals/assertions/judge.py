"""`llm_judge`: a model (any the gateway serves) scores the output against a rubric and answers a strict JSON verdict
{"score": 0..1, "pass": true|false, "reason": "..."}.

The verdict is parsed strictly (one JSON object with exactly those keys, optionally inside one ```json fence). An
answer that is not one is sent back to the judge with what was wrong, at most twice more; then the assertion is an
error, never a pass. What the judge calls cost is the assertion's `cost_usd`, apart from the target's cost.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import Field

from gateway.errors import GatewayError
from gateway.evals.assertions.base import AssertContext, Assertion, Outcome, Unit, clip, errored, failure, held
from gateway.evals.observed import Observed

ATTEMPTS = 3  # the first answer and two retries
SYSTEM = (
    "You grade the output of an AI assistant against a rubric. Read the rubric, the input the assistant was given "
    "and its output, then answer with exactly one JSON object and nothing else:\n"
    '{"score": <a number from 0 to 1>, "pass": <true or false>, "reason": "<one or two sentences>"}\n'
    "score: how well the output meets the rubric (1 fully, 0 not at all). pass: whether it meets the rubric."
)
VERDICT_KEYS = frozenset({"score", "pass", "reason"})


class Judged(Assertion):
    """A judge model scores the output against `rubric`; passes when the verdict passes with score >= threshold."""

    uses = frozenset({"judge"})
    type: Literal["llm_judge", "not-llm_judge"]
    rubric: str = Field(min_length=1, description="what a good output does, in words the judge can apply")
    model: str = Field(min_length=1, description="the judge: a model's public name on the gateway")
    threshold: Unit = Field(default=0.5, description="the least verdict score that passes, 0..1")

    def expectation(self) -> str:
        return f"judge {self.model!r} to pass the output with score >= {self.threshold:g} on rubric {clip(self.rubric)}"

    async def acheck(self, observed: Observed, ctx: AssertContext) -> Outcome:
        if observed.error is not None and not observed.text:
            return held(False, f"no output to judge: the call failed with {failure(observed)}")
        messages = judge_messages(self.rubric, observed.text, vars=ctx.vars, messages=getattr(ctx, "messages", None))
        cost, problem, answer = 0.0, "", ""
        for _ in range(ATTEMPTS):
            try:
                answer, spent = await ctx.complete(self.model, messages)
            except GatewayError as exc:
                return errored(f"judge {self.model!r} failed: {exc.message}", cost_usd=cost)
            cost += spent
            try:
                verdict = parse_verdict(answer)
            except ValueError as exc:
                problem = str(exc)
                messages = [*messages, {"role": "assistant", "content": answer}, {"role": "user", "content": (
                    f"That answer is not a valid verdict: {problem}. Reply with only the JSON object "
                    '{"score": <0..1>, "pass": <true|false>, "reason": "<text>"}.'
                )}]  # fmt: skip
                continue
            passed = verdict.passed and verdict.score >= self.threshold
            seen = f"score {verdict.score:g}, pass {str(verdict.passed).lower()}: {clip(verdict.reason)}"
            return Outcome(passed, verdict.score, seen, cost_usd=cost)
        error = f"judge {self.model!r} gave no valid verdict in {ATTEMPTS} answers ({problem}); last: {clip(answer)}"
        return errored(error, cost_usd=cost)


@dataclass(frozen=True, slots=True)
class Verdict:
    score: float
    passed: bool
    reason: str


def parse_verdict(answer: str) -> Verdict:
    """The judge's answer as a Verdict; raises ValueError saying what is wrong with it."""
    text = answer.strip()
    if text.startswith("```"):
        first, _, rest = text.partition("\n")
        if first.strip("`").strip().lower() not in ("", "json") or not rest.rstrip().endswith("```"):
            raise ValueError("expected one JSON object, optionally in one ```json fence")
        text = rest.rstrip()[:-3]
    try:
        found = json.loads(text)
    except ValueError:
        raise ValueError("not JSON") from None
    if not isinstance(found, dict):
        raise ValueError(f"expected a JSON object, got {type(found).__name__}")
    if found.keys() != VERDICT_KEYS:
        raise ValueError(f"expected exactly the keys score, pass, reason; got {', '.join(sorted(found)) or 'none'}")
    score, passed, reason = found["score"], found["pass"], found["reason"]
    if isinstance(score, bool) or not isinstance(score, int | float) or not math.isfinite(score) or not 0 <= score <= 1:
        raise ValueError(f"score must be a number from 0 to 1, got {score!r}")
    if not isinstance(passed, bool):
        raise ValueError(f"pass must be true or false, got {passed!r}")
    if not isinstance(reason, str):
        raise ValueError(f"reason must be a string, got {reason!r}")
    return Verdict(float(score), passed, reason)


def judge_messages(
    rubric: str, output: str, *, vars: dict[str, Any], messages: list[dict[str, Any]] | None = None
) -> list[dict[str, Any]]:
    """The judge's chat: the instructions, then the rubric, the case's input (its messages and/or variables) and the
    output to grade."""
    parts = [f"# Rubric\n{rubric}"]
    if messages:
        lines = [f"{m.get('role', 'user')}: {_content(m.get('content'))}" for m in messages if isinstance(m, dict)]
        parts.append("# Input (the conversation the assistant answered)\n" + "\n".join(lines))
    if vars:
        parts.append("# Variables of the case\n" + json.dumps(vars, ensure_ascii=False, indent=1, default=str))
    parts.append(f"# Output to grade\n{output}")
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": "\n\n".join(parts)}]


def _content(content: object) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # content parts: their texts
        return " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return "" if content is None else json.dumps(content, default=str)
