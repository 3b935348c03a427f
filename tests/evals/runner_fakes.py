"""Small stand-ins for the suite model (gateway/evals/spec.py) and the assertions, so the runner's tests build suites
in code and read results without depending on how suites are parsed. Shapes follow the helpers' contract."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gateway.evals.observed import AssertionResult, Observed


@dataclass
class Target:
    id: str
    kind: str = "model"
    model: str | None = None
    prompt_id: str | None = None
    label: str | None = None
    version: int | None = None

    def __post_init__(self) -> None:
        if self.kind == "model" and self.model is None:
            self.model = self.id


@dataclass
class Check:
    """An assertion: `contains` (value in the text), `blocked` (a block decision), `judge` (asks ctx.complete),
    `similar` (asks ctx.embed), `boom` (raises)."""

    type: str
    value: str = ""
    weight: float = 1.0
    metric: str | None = None


@dataclass
class Case:
    id: str
    text: str | None = "hello"
    assertions: list[Any] = field(default_factory=list)
    request: dict[str, Any] = field(default_factory=dict)
    vars: dict[str, Any] = field(default_factory=dict)
    repeat: int = 1
    pass_rate: float = 1.0
    threshold: float = 1.0
    description: str = ""

    @property
    def messages(self) -> list[dict[str, Any]] | None:
        return None if self.text is None else [{"role": "user", "content": self.text}]


@dataclass
class Suite:
    cases: list[Case]
    targets: list[Target] = field(default_factory=lambda: [Target("demo")])
    name: str = "runner-test"
    path: Path = Path("evals/runner-test.yaml")
    sha256: str = "0" * 64
    description: str = ""


async def evaluate(spec: Check, observed: Observed, ctx: Any) -> AssertionResult:
    if spec.type == "contains":
        passed = spec.value in observed.text
        return AssertionResult("contains", passed, float(passed), f"looked for {spec.value!r}", spec.weight,
                               metric=spec.metric)  # fmt: skip
    if spec.type == "blocked":
        passed = any(d.get("action") == "block" for d in observed.decisions)
        return AssertionResult("blocked", passed, float(passed), str(observed.decisions), spec.weight)
    if spec.type == "judge":
        text, cost = await ctx.complete(spec.value or "demo", [{"role": "user", "content": observed.text}])
        return AssertionResult("judge", True, 1.0, text, spec.weight, cost_usd=cost)
    if spec.type == "similar":
        output, expected = await ctx.embed(spec.value, [observed.text, "x"])
        score = sum(a * b for a, b in zip(output, expected, strict=True))
        return AssertionResult("similar", True, score, "cosine", spec.weight)
    raise RuntimeError("this assertion always raises")
