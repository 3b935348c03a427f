"""Every assertion type in one discriminated union (`AssertionSpec`, on `type`, `not-` forms included), and how the
runner evaluates them: one at a time (`evaluate`) or many at once (`evaluate_many`, which batches embeddings)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Union, get_args

from pydantic import Field, TypeAdapter

from gateway.evals.assertions.base import AssertContext, Assertion, Outcome, conclude
from gateway.evals.assertions.deterministic import (
    Contains,
    ContainsSome,
    Cost,
    Equals,
    FinishReason,
    IsJson,
    JsonSchema,
    Latency,
    Levenshtein,
    Regex,
    Tokens,
    ToolCallMade,
    WordCount,
)
from gateway.evals.assertions.governance import Allowed, Blocked, Redacted, RequiresApproval, ToolWithheld, Warned
from gateway.evals.assertions.judge import Judged
from gateway.evals.assertions.semantic import Similar, check_many
from gateway.evals.observed import AssertionResult, Observed

AssertionSpec = Annotated[
    Union[  # noqa: UP007 - a runtime alias
        Equals,
        Contains,
        ContainsSome,
        Regex,
        IsJson,
        JsonSchema,
        ToolCallMade,
        Levenshtein,
        WordCount,
        FinishReason,
        Latency,
        Tokens,
        Cost,
        Similar,
        Judged,
        Blocked,
        Redacted,
        Warned,
        ToolWithheld,
        RequiresApproval,
        Allowed,
    ],  # fmt: skip
    Field(discriminator="type"),
]
ASSERTION_ADAPTER: TypeAdapter[AssertionSpec] = TypeAdapter(AssertionSpec)
# Every `type` a suite may write, `not-` forms included, in the union's order.
ASSERTION_TYPES: tuple[str, ...] = tuple(
    name for model in get_args(get_args(AssertionSpec)[0]) for name in get_args(model.model_fields["type"].annotation)
)


def parse_assertion(data: object) -> AssertionSpec:
    """One assertion as written (a mapping); raises pydantic.ValidationError with the field's path."""
    return ASSERTION_ADAPTER.validate_python(data)


def uses(spec: Assertion) -> set[str]:
    """What the runner must provide for this assertion, among "embed", "judge" and "decisions"."""
    return set(spec.uses)


async def evaluate(spec: Assertion, observed: Observed, ctx: AssertContext) -> AssertionResult:
    """The assertion's result for one attempt; a bad answer (or a judge's garbage) is a result, never an exception."""
    if isinstance(spec, Similar | Judged):
        outcome = await spec.acheck(observed, ctx)
    else:
        outcome = spec.check(observed)
    return conclude(spec, outcome)


async def evaluate_many(items: Sequence[tuple[Assertion, Observed, AssertContext]]) -> list[AssertionResult]:
    """Results for many (assertion, attempt, context) at once, in order: every `similar` among them is embedded in
    one request per embedding model (through the first such item's context), the others as `evaluate` does."""
    similar = [i for i, (spec, _, _) in enumerate(items) if isinstance(spec, Similar)]
    outcomes: dict[int, Outcome] = dict(
        zip(similar, await check_many([items[i] for i in similar]), strict=True)  # type: ignore[misc]
    )
    results = []
    for i, (spec, observed, ctx) in enumerate(items):
        if i in outcomes:
            results.append(conclude(spec, outcomes[i]))
        else:
            results.append(await evaluate(spec, observed, ctx))
    return results
