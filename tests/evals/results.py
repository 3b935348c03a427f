"""Canonical run results (format gateway-eval-result/1) for the report and baseline tests, built the way the runner
builds them."""

from __future__ import annotations

import copy
from typing import Any

TARGETS = [
    {"id": "gpt-4o-mini", "kind": "model", "model": "gpt-4o-mini", "prompt_id": None, "prompt_version": None},
    {"id": "prompt:triage@staging", "kind": "prompt", "model": None, "prompt_id": "triage", "prompt_version": 3},
]


def assertion(kind: str, passed: bool, reason: str, *, error: str | None = None, score: float | None = None,
              metric: str | None = None) -> dict[str, Any]:  # fmt: skip
    score = (1.0 if passed else 0.0) if score is None else score
    return {"type": kind, "passed": passed, "score": score, "weight": 1.0, "reason": reason, "error": error,
            "metric": metric}  # fmt: skip


def item(case: str, target: str, status: str, *assertions: dict[str, Any], repeats: int = 1,
         output: str = "ok", latency: float = 12.0) -> dict[str, Any]:  # fmt: skip
    passed = all(a["passed"] and not a["error"] for a in assertions)
    attempts = [
        {"repeat": r, "passed": passed, "score": 1.0 if passed else 0.0, "request_id": f"req_{case}_{r}",
         "latency_ms": latency, "cost_usd": 0.0001, "output": output, "assertions": list(assertions)}
        for r in range(repeats)
    ] if status != "skipped" else []  # fmt: skip
    rate = (1.0 if passed else 0.0) if attempts else 0.0
    return {"case_id": case, "target": target, "status": status, "pass_rate": rate, "required_pass_rate": 1.0,
            "repeats": repeats, "score": rate, "attempts": attempts}  # fmt: skip


def result(*items: dict[str, Any], name: str = "shipped-policies", sha: str = "a" * 64, run_id: str = "evr_1",
           metrics: dict[str, float] | None = None, status: str | None = None) -> dict[str, Any]:  # fmt: skip
    count = [i["status"] for i in items].count
    counts = {"total": len(items), "passed": count("passed"), "failed": count("failed"), "errors": count("error"),
              "skipped": count("skipped")}  # fmt: skip
    return copy.deepcopy({
        "format": "gateway-eval-result/1", "run_id": run_id,
        "suite": {"name": name, "path": "evals/policies.yaml", "sha256": sha}, "targets": TARGETS,
        "git_commit": "abc123", "started_at": "2026-12-07T23:00:00Z", "finished_at": "2026-12-07T23:00:05Z",
        "status": status or ("passed" if counts["passed"] == counts["total"] else "failed"),
        "incomplete_reason": None, "counts": counts, "pass_rate": counts["passed"] / max(counts["total"], 1),
        "cost_usd": {"target": 0.0123, "judge": 0.0004}, "metrics": metrics or {}, "results": list(items),
    })  # fmt: skip


def sample() -> dict[str, Any]:
    """Both targets: a pass, a failure with two reasons, an error, a skip, and a repeated case."""
    m, p = TARGETS[0]["id"], TARGETS[1]["id"]
    return result(
        item("blocks-ssn", m, "passed", assertion("blocked", True, "blocked by rule pii-block")),
        item("greets", m, "failed",
             assertion("icontains", False, "output does not contain 'ada' (output: 'Hi | there')"),
             assertion("latency", False, "took 2500 ms, over 2000 ms"), assertion("is-json", True, "valid JSON"),
             output="Hi | there <b>\x00"),
        item("judged", m, "error", assertion("llm_judge", False, "", error="the judge answered garbage 3 times")),
        item("blocks-ssn", p, "passed", assertion("blocked", True, "blocked by rule pii-block")),
        item("greets", p, "passed", assertion("icontains", True, "contains 'ada'"), repeats=3),
        item("judged", p, "skipped"),
        metrics={"helpfulness": 0.8},
    )  # fmt: skip
