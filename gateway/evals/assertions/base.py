"""What every assertion shares: the YAML fields every type takes, the `not-` form, the context an assertion may ask
of the runner, and how an outcome becomes the `AssertionResult` the reports show.

An assertion model says what was written (pydantic, extra="forbid", frozen; regexes and schemas checked at load);
its `check` (or `acheck`, for the ones that call a model) says what it saw. `not-<type>` inverts the pass and the
score (1 - score); an assertion that could not be evaluated stays an error, never a pass, negated or not.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar, Protocol

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from gateway.evals.observed import AssertionResult, Observed

CLIP = 200  # characters of a text a reason quotes


class AssertContext(Protocol):
    """What an assertion may ask of the runner. A context may also carry `messages` (the chat the target was sent):
    `llm_judge` shows them to the judge when present."""

    vars: dict[str, Any]  # the case's variables

    async def embed(self, model: str, texts: list[str]) -> list[list[float]]:
        """Unit vectors for texts, from a configured embedding model or `local/all-MiniLM-L6-v2`."""
        ...

    async def complete(self, model: str, messages: list[dict[str, Any]]) -> tuple[str, float]:
        """A judge's answer through the gateway (its text, its cost in USD, counted apart from the target's)."""
        ...


def _finite(value: float) -> float:
    if not math.isfinite(value):
        raise ValueError("must be a finite number")
    return value


Finite = Annotated[float, AfterValidator(_finite)]
Unit = Annotated[float, Field(ge=0, le=1), AfterValidator(_finite)]  # similar and llm_judge thresholds
NonNegative = Annotated[float, Field(ge=0), AfterValidator(_finite)]  # latency (ms) and cost (USD) thresholds


@dataclass(slots=True)
class Outcome:
    """What a check saw: whether the expectation held, its score (0..1), and the evidence for the reason."""

    passed: bool
    score: float
    seen: str
    error: str | None = None
    cost_usd: float = 0.0


def held(passed: bool, seen: str) -> Outcome:
    """A deterministic outcome: score 1 when the expectation held, else 0."""
    return Outcome(passed, 1.0 if passed else 0.0, seen)


def errored(error: str, *, cost_usd: float = 0.0) -> Outcome:
    """The assertion could not be evaluated: an error, which is never a pass."""
    return Outcome(False, 0.0, "", error=error, cost_usd=cost_usd)


class Assertion(BaseModel):
    """The fields every assertion takes. Subclasses set `type` to a Literal of their name and its `not-` form."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    uses: ClassVar[frozenset[str]] = frozenset()  # among "embed", "judge", "decisions": what the runner must provide
    type: str
    weight: Finite = Field(default=1.0, gt=0, description="its share of the attempt's score")
    metric: str | None = Field(
        default=None, min_length=1, max_length=100, description="a named metric its score feeds (mean per run)"
    )

    @property
    def negated(self) -> bool:
        return self.type.startswith("not-")

    def expectation(self) -> str:
        """What must hold, in words ("output contains 'refund'"), for the reason."""
        raise NotImplementedError

    def check(self, observed: Observed) -> Outcome:
        raise NotImplementedError


def conclude(spec: Assertion, outcome: Outcome) -> AssertionResult:
    """The result the reports show: `not-` applied, the reason saying what was expected and what was seen."""
    expected = f"not ({spec.expectation()})" if spec.negated else spec.expectation()
    if outcome.error is not None:
        return AssertionResult(
            type=spec.type, passed=False, score=0.0, reason=f"expected {expected}; could not evaluate: {outcome.error}",
            weight=spec.weight, error=outcome.error, metric=spec.metric, cost_usd=outcome.cost_usd,
        )  # fmt: skip
    passed, score = outcome.passed, min(1.0, max(0.0, outcome.score))
    if spec.negated:
        passed, score = not passed, 1.0 - score
    return AssertionResult(
        type=spec.type, passed=passed, score=score, reason=f"expected {expected}; saw {outcome.seen}",
        weight=spec.weight, metric=spec.metric, cost_usd=outcome.cost_usd,
    )  # fmt: skip


def clip(text: str, limit: int = CLIP) -> str:
    """A text quoted for a reason: repr'd, cut to `limit` characters with the length of what was cut."""
    if len(text) <= limit:
        return repr(text)
    return f"{text[:limit]!r}... ({len(text)} chars)"


def plural(count: int, noun: str) -> str:
    """'1 word', '3 words'."""
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def shorten(text: str, limit: int = CLIP) -> str:
    """A text cut to `limit` characters, saying how long it was."""
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} chars)"


def output_seen(observed: Observed) -> str:
    """The output as a reason quotes it; a failed call says so instead (its status, code and message)."""
    if observed.error is not None and not observed.text:
        return f"no output: the call failed with {failure(observed)}"
    return f"output {clip(observed.text)}"


def failure(observed: Observed) -> str:
    error = observed.error or {}
    message = str(error.get("message") or "")
    return f"{observed.status} {error.get('code') or error.get('type') or 'error'}" + (
        f" ({clip(message, 120)})" if message else ""
    )
