"""Canonical eval run results (gateway-eval-result/1) for the store, gate and API tests."""

from __future__ import annotations

import hashlib
import uuid
from typing import Any

SHA = hashlib.sha256(b"suite").hexdigest()


def run_id() -> str:
    return "evr_" + uuid.uuid4().hex


def make_result(
    *,
    rid: str | None = None,
    sha: str = SHA,
    prompt: tuple[str, int] | None = ("support-triage", 2),
    model: str | None = "gpt-test",
    statuses: dict[str, list[str]] | None = None,
    status: str | None = None,
    suite: str = "triage",
) -> dict[str, Any]:
    """A run against a prompt target and/or a model target; `statuses` gives each target's case statuses (all
    passed by default, two cases)."""
    targets: list[dict[str, Any]] = []
    if prompt is not None:
        targets.append({"id": f"prompt:{prompt[0]}@staging", "kind": "prompt", "model": None,
                        "prompt_id": prompt[0], "prompt_version": prompt[1]})  # fmt: skip
    if model is not None:
        targets.append({"id": model, "kind": "model", "model": model, "prompt_id": None, "prompt_version": None})
    statuses = statuses or {}
    results = []
    for target in targets:
        for i, case_status in enumerate(statuses.get(target["id"], ["passed", "passed"])):
            passed = case_status == "passed"
            results.append({
                "case_id": f"case-{i}", "target": target["id"], "status": case_status, "pass_rate": float(passed),
                "required_pass_rate": 1.0, "repeats": 1, "score": float(passed),
                "attempts": [{"repeat": 0, "passed": passed, "score": float(passed), "request_id": f"req_{i}",
                              "latency_ms": 3.1, "cost_usd": 0.0, "output": "ok", "assertions": []}],
            })  # fmt: skip
    passed = sum(r["status"] == "passed" for r in results)
    return {
        "format": "gateway-eval-result/1",
        "run_id": rid or run_id(),
        "suite": {"name": suite, "path": f"evals/{suite}.yaml", "sha256": sha},
        "targets": targets,
        "git_commit": "abc123",
        "started_at": "2026-12-07T23:00:00Z",
        "finished_at": "2026-12-07T23:00:05Z",
        "status": status or ("passed" if passed == len(results) else "failed"),
        "incomplete_reason": None,
        "counts": {
            "total": len(results),
            "passed": passed,
            "failed": sum(r["status"] == "failed" for r in results),
            "errors": sum(r["status"] == "error" for r in results),
            "skipped": 0,
        },  # fmt: skip
        "pass_rate": passed / len(results) if results else 0.0,
        "cost_usd": {"target": 0.0123, "judge": 0.0004},
        "metrics": {},
        "results": results,
    }
