"""`similar`: the output means what `value` says, as the cosine similarity of their embeddings (the local
all-MiniLM-L6-v2 by default, or any embedding model the gateway serves) reaching `threshold`.

Embeddings come from the runner (`AssertContext.embed`). `check_many` embeds the outputs and expected values of many
assertions in one request per model (each distinct text once), which is what makes a suite of them fast; an
assertion keeps its expected values' vectors, so repeats and further targets of a case embed only their outputs.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Sequence
from typing import Literal

from pydantic import Field, PrivateAttr, field_validator

from gateway.errors import GatewayError
from gateway.evals.assertions.base import AssertContext, Assertion, Outcome, Unit, clip, errored, held, output_seen
from gateway.evals.observed import Observed

DEFAULT_EMBEDDING_MODEL = "local/all-MiniLM-L6-v2"
EMBED_BATCH = 256  # texts per embeddings request (the gateway takes at most 2,048)


class Similar(Assertion):
    """Cosine similarity of the output to `value` (to the closest of several values) is at least `threshold`."""

    uses = frozenset({"embed"})
    type: Literal["similar", "not-similar"]
    value: str | list[str] = Field(description="the expected text, or several (the closest counts)")
    threshold: Unit = Field(default=0.8, description="the least cosine similarity that passes, 0..1")
    model: str = Field(default=DEFAULT_EMBEDDING_MODEL, min_length=1, description="an embedding model's public name")
    _vectors: list[Sequence[float]] | None = PrivateAttr(default=None)  # the expected values', once embedded

    @field_validator("value")
    @classmethod
    def _non_empty(cls, value: str | list[str]) -> str | list[str]:
        if not value or (isinstance(value, list) and not all(value)):
            raise ValueError("expected a non-empty text or a non-empty list of non-empty texts")
        return value

    @property
    def expected(self) -> list[str]:
        return [self.value] if isinstance(self.value, str) else self.value

    def expectation(self) -> str:
        target = clip(self.value) if isinstance(self.value, str) else f"one of {len(self.value)} texts"
        return f"output similar to {target} (cosine >= {self.threshold:g})"

    async def acheck(self, observed: Observed, ctx: AssertContext) -> Outcome:
        return (await check_many([(self, observed, ctx)]))[0]

    def compare(self, observed: Observed, output: Sequence[float], expected: Sequence[Sequence[float]]) -> Outcome:
        scores = [cosine(output, vector) for vector in expected]
        best = max(range(len(scores)), key=scores.__getitem__)
        closest = f" (closest: {clip(self.expected[best])})" if len(scores) > 1 else ""
        seen = f"{output_seen(observed)}, cosine {scores[best]:.3f}{closest}"
        return Outcome(scores[best] >= self.threshold, max(0.0, scores[best]), seen)


def cosine(a: Sequence[float], b: Sequence[float]) -> float:
    norms = math.sqrt(sum(map(operator.mul, a, a)) * sum(map(operator.mul, b, b)))
    return sum(map(operator.mul, a, b)) / norms if norms else 0.0


async def check_many(items: Sequence[tuple[Similar, Observed, AssertContext]]) -> list[Outcome]:
    """Outcomes of many `similar` assertions, each distinct text embedded once, in requests of at most EMBED_BATCH
    texts per embedding model (through the first item's context). A failed call's empty output fails without being
    embedded. When a batch is refused (one output too long for the model), each assertion is asked for alone, so the
    refusal is the error of the assertions it concerns only."""
    outcomes: list[Outcome | None] = [None] * len(items)
    by_model: dict[str, list[int]] = {}
    for i, (spec, observed, _) in enumerate(items):
        if observed.error is not None and not observed.text:
            outcomes[i] = held(False, output_seen(observed))
        else:
            by_model.setdefault(spec.model, []).append(i)
    for model, indices in by_model.items():
        texts: dict[str, int] = {}
        for i in indices:
            spec, observed, _ = items[i]
            for text in (observed.text, *(spec.expected if spec._vectors is None else ())):
                texts.setdefault(text, len(texts))
        try:
            vectors = await embed(items[indices[0]][2], model, list(texts))
        except GatewayError as exc:
            if len(indices) > 1:
                for i in indices:
                    outcomes[i] = (await check_many([items[i]]))[0]
            else:
                outcomes[indices[0]] = errored(f"embedding model {model!r} failed: {exc.message}")
            continue
        except LengthError as exc:
            for i in indices:
                outcomes[i] = errored(f"embedding model {model!r} {exc}")
            continue
        for i in indices:
            spec, observed, _ = items[i]
            if spec._vectors is None:
                spec._vectors = [vectors[texts[text]] for text in spec.expected]
            outcomes[i] = spec.compare(observed, vectors[texts[observed.text]], spec._vectors)
    return outcomes  # type: ignore[return-value]  # every index was filled above


class LengthError(Exception):
    """An embedding model answered a different number of vectors than it was given texts."""


async def embed(ctx: AssertContext, model: str, texts: list[str]) -> list[Sequence[float]]:
    vectors: list[Sequence[float]] = []
    for start in range(0, len(texts), EMBED_BATCH):
        chunk = texts[start : start + EMBED_BATCH]
        found = await ctx.embed(model, chunk)
        if len(found) != len(chunk):
            raise LengthError(f"gave {len(found)} vectors for {len(chunk)} texts")
        vectors += found
    return vectors
