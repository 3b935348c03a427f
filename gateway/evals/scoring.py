"""What a run's result says: an attempt's weighted score and pass, a (case, target)'s status from its attempts, the
run's metrics, each in the canonical result's JSON shape. The rules a user reads in the reports are written here once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gateway.evals.answers import OUTPUT_LIMIT
from gateway.evals.observed import AssertionResult, Observed

EPSILON = 1e-9


@dataclass(slots=True)
class Unit:
    """One (case, target): its request, and its attempts as they finish (None: not run)."""

    case: Any
    target: Any
    request: dict[str, Any]
    repeats: int
    attempts: list[dict[str, Any] | None] = field(default_factory=list)
    metric_scores: dict[str, list[float]] = field(default_factory=dict)


def display_path(path: Path | str) -> str:
    path = Path(path)
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def output_of(observed: Observed) -> str:
    if observed.text:
        return observed.text[:OUTPUT_LIMIT]
    if observed.tool_calls:
        calls = ", ".join(f"{call.name}({call.arguments})" for call in observed.tool_calls)
        return f"tool calls: {calls}"[:OUTPUT_LIMIT]
    if observed.error:
        return f"error {observed.status}: {observed.error.get('message')}"[:OUTPUT_LIMIT]
    return ""


def attempt_score(results: Sequence[AssertionResult]) -> float:
    weights = sum(r.weight for r in results)
    return sum(r.weight * r.score for r in results) / weights if weights else 1.0


def attempt_json(repeat: int, observed: Observed | None, results: list[AssertionResult], error: str | None,
                 threshold: float) -> dict[str, Any]:  # fmt: skip
    """An attempt passes when no assertion errored and its weighted score reaches the case's threshold; at the
    default threshold 1.0 that means every assertion passed (a `similar` at 0.9 over its 0.8 threshold passes)."""
    score = 0.0 if error else attempt_score(results)
    errored = error is not None or any(r.error for r in results)
    if errored:
        passed = False
    elif threshold >= 1.0 - EPSILON:
        passed = all(r.passed for r in results)
    else:
        passed = score >= threshold - EPSILON
    return {
        "repeat": repeat,
        "passed": passed,
        "score": round(score, 6),
        "request_id": observed.request_id if observed else None,
        "latency_ms": round(observed.latency_ms, 3) if observed else None,
        "cost_usd": observed.cost_usd if observed else 0.0,
        "cached": observed.cached if observed else False,
        "output": output_of(observed) if observed else "",
        "error": error if error else next((r.error for r in results if r.error), None),
        "assertions": [r.as_json() for r in results],
    }


def unit_json(unit: Unit) -> dict[str, Any]:
    """A (case, target) passes when its share of passing attempts reaches the case's pass_rate; it is an error when
    every attempt that did not pass errored; skipped when the run stopped before all its attempts ran."""
    done = [a for a in unit.attempts if a is not None]
    passes = sum(a["passed"] for a in done)
    rate = passes / unit.repeats if unit.repeats else 0.0
    required = float(unit.case.pass_rate)
    if len(done) < unit.repeats:
        status = "skipped"
    elif rate >= required - EPSILON:
        status = "passed"
    elif all(a["error"] for a in done if not a["passed"]):
        status = "error"
    else:
        status = "failed"
    return {
        "case_id": unit.case.id,
        "target": unit.target.id,
        "status": status,
        "pass_rate": round(rate, 6),
        "required_pass_rate": required,
        "repeats": unit.repeats,
        "score": round(sum(a["score"] for a in done) / len(done), 6) if done else 0.0,
        "attempts": done,
    }


def run_metrics(units: Sequence[Unit]) -> dict[str, float]:
    """Each metric's mean over the (case, target) pairs that produced it, each pair's own mean over its attempts."""
    per_unit: dict[str, list[float]] = {}
    for unit in units:
        for name, scores in unit.metric_scores.items():
            per_unit.setdefault(name, []).append(sum(scores) / len(scores))
    return {name: round(sum(v) / len(v), 6) for name, v in sorted(per_unit.items())}
