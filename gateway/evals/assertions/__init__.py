"""Assertions of eval cases: deterministic, semantic (`similar`), judged (`llm_judge`) and governance ones.

The interface the runner uses (owned here):
- `AssertionSpec`: the pydantic discriminated union (on `type`, `not-` forms included) of every assertion's YAML shape;
- `evaluate(spec, observed, ctx) -> AssertionResult` (async; never raises for a bad answer: an assertion that cannot be
  evaluated returns a result with `error` set, which is not a pass);
- `AssertContext`: what an assertion may ask of the runner (embeddings, a judge call, the case's variables).
"""

from __future__ import annotations

from typing import Any, Protocol


class AssertContext(Protocol):
    vars: dict[str, Any]  # the case's variables

    async def embed(self, model: str, texts: list[str]) -> list[list[float]]:
        """Unit vectors for texts, from a configured embedding model or `local/all-MiniLM-L6-v2`."""
        ...

    async def complete(self, model: str, messages: list[dict[str, Any]]) -> tuple[str, float]:
        """A judge's answer through the gateway (its text, its cost in USD, counted apart from the target's)."""
        ...
