"""Assertions of eval cases: deterministic, semantic (`similar`), judged (`llm_judge`) and governance ones.

The interface the runner uses (owned here):
- `AssertionSpec`: the pydantic discriminated union (on `type`, `not-` forms included) of every assertion's YAML shape;
- `evaluate(spec, observed, ctx) -> AssertionResult` (async; never raises for a bad answer: an assertion that cannot be
  evaluated returns a result with `error` set, which is not a pass); `evaluate_many` batches the embeddings of many;
- `uses(spec)`: what the runner must provide for it ("embed", "judge", "decisions");
- `AssertContext`: what an assertion may ask of the runner (embeddings, a judge call, the case's variables).

Modules: base.py (shared fields, `not-`, results), deterministic.py, semantic.py (`similar`), judge.py
(`llm_judge`), governance.py, registry.py (the union and evaluation).
"""

from __future__ import annotations

from gateway.evals.assertions.base import AssertContext, Assertion
from gateway.evals.assertions.registry import (
    ASSERTION_TYPES,
    AssertionSpec,
    evaluate,
    evaluate_many,
    parse_assertion,
    uses,
)

__all__ = [
    "ASSERTION_TYPES", "AssertContext", "Assertion", "AssertionSpec", "evaluate", "evaluate_many", "parse_assertion",
    "uses",
]  # fmt: skip
