"""Runs a suite's cases against its targets, `repeat` times each, and builds the canonical run result.

Attempts (case x target x repeat) run `concurrency` at a time, in suite order. Each attempt asks the response cache,
else the client; its assertions are evaluated in order and combined into a weighted score. A cost cap stops the
scheduling of new attempts once the run's spend (target calls plus judge calls) reaches it: calls in flight finish,
the rest are reported as skipped, and the run is `incomplete`. A target that cannot be reached ends the run the same
way. A run passes when every (case, target) passed; when an attempt or a case passes is scoring.py's.
"""

from __future__ import annotations

import asyncio
import fnmatch
import os
import subprocess
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from gateway.evals.cache import ResponseCache, cache_key
from gateway.evals.cassette import NOT_IN_CASSETTE
from gateway.evals.clients import CallFailed, EvalClient, TargetUnreachable
from gateway.evals.observed import AssertionResult, Observed
from gateway.evals.progress import Progress
from gateway.evals.scoring import Unit, attempt_json, display_path, run_metrics, unit_json

FORMAT = "gateway-eval-result/1"
Evaluate = Callable[[Any, Observed, Any], Awaitable[AssertionResult]]
EvaluateMany = Callable[[Sequence[tuple[Any, Observed, Any]]], Awaitable[list[AssertionResult]]]


@dataclass(slots=True)
class RunOptions:
    repeat: int | None = None  # overrides every case's repeat
    concurrency: int = 8
    filter: str | None = None  # a glob (with * ? [) or a substring of case ids
    max_cost: float | None = None  # USD, target and judge calls together
    progress: Progress | None = None


def new_run_id() -> str:
    """`evr_` + 26 hex characters: the time in milliseconds (12), then 56 random bits; sortable by start."""
    return f"evr_{time.time_ns() // 1_000_000:012x}{os.urandom(7).hex()}"


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def git_commit(folder: Path) -> str | None:
    try:
        done = subprocess.run(["git", "rev-parse", "HEAD"], cwd=folder, capture_output=True, text=True, timeout=5,
                              check=False)  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return None
    commit = done.stdout.strip()
    return commit if done.returncode == 0 and commit else None


def matches(case_id: str, pattern: str | None) -> bool:
    if not pattern:
        return True
    if any(c in pattern for c in "*?["):
        return fnmatch.fnmatchcase(case_id, pattern)
    return pattern in case_id


def selected_cases(suite: Any, pattern: str | None) -> list[Any]:
    return [case for case in suite.cases if matches(case.id, pattern)]


def target_model_name(target: Any) -> str:
    """The `model` a request to this target sends."""
    if target.kind == "prompt":
        pin = target.label if target.label not in (None, "latest") else target.version
        return f"prompt:{target.prompt_id}" + (f"@{pin}" if pin is not None else "")
    return str(target.model)


def build_request(case: Any, target: Any) -> dict[str, Any]:
    """The contract's request: the target's model, the case's messages, then the case's request fields."""
    if target.kind == "prompt" and "model" in case.request:
        # A model named in the request serves the prompt (the extension field's form): `request: {model: demo}`.
        pin = {"version": target.version} if target.version is not None else {"label": target.label or "latest"}
        request = {"prompt": {"id": target.prompt_id, **pin, "variables": dict(case.vars)},
                   "messages": list(case.messages or [])}  # fmt: skip
    elif target.kind == "prompt":
        request = {"model": target_model_name(target), "prompt": {"variables": dict(case.vars)},
                   "messages": list(case.messages or [])}  # fmt: skip
    else:
        request = {"model": target.model}
        if case.messages is not None:
            request["messages"] = case.messages
    request.update(case.request)
    return request


def assertion_type(spec: Any) -> str:
    return str(getattr(spec, "type", type(spec).__name__))


def suite_needs(suite: Any, uses: Callable[[Any], set[str]]) -> set[str]:
    """What the suite's assertions ask of the client: "embed", "judge", "decisions", and "cost" (a cost assertion)."""
    needs: set[str] = set()
    for case in suite.cases:
        for spec in case.assertions:
            needs |= uses(spec)
            if assertion_type(spec).removeprefix("not-") == "cost":
                needs.add("cost")
    return needs


class CaseContext:
    """The AssertContext of one attempt: the case's variables, embeddings, and a judge whose cost the run counts."""

    __slots__ = ("vars", "messages", "_run")

    def __init__(self, case_vars: dict[str, Any], run: SuiteRun, messages: list[dict[str, Any]] | None = None) -> None:
        self.vars = case_vars
        self.messages = messages  # what the case sent (a judge reads it as the input it grades against)
        self._run = run

    async def embed(self, model: str, texts: list[str]) -> list[list[float]]:
        return await self._run.client.embed(model, texts)

    async def complete(self, model: str, messages: list[dict[str, Any]]) -> tuple[str, float]:
        async with self._run.limit:  # a judge call is a model call: it takes a concurrency slot too
            text, cost = await self._run.client.complete(model, messages)
        self._run.judge_cost += cost
        return text, cost


class SuiteRun:
    """One run of one suite through one client."""

    def __init__(self, suite: Any, client: EvalClient, cache: ResponseCache, options: RunOptions,
                 evaluate: Evaluate, evaluate_many: EvaluateMany | None = None) -> None:  # fmt: skip
        self.suite = suite
        self.client = client
        self.cache = cache
        self.options = options
        self.evaluate = evaluate
        self.evaluate_many = evaluate_many
        self.run_id = new_run_id()
        self.target_cost = 0.0
        self.judge_cost = 0.0
        self.stop_reason: str | None = None
        self.prompt_versions: dict[str, int] = {}
        self.units: list[Unit] = []
        self.limit = asyncio.Semaphore(max(1, options.concurrency))

    @property
    def spent(self) -> float:
        return self.target_cost + self.judge_cost

    async def run(self) -> dict[str, Any]:
        started_at = now_iso()
        cases = selected_cases(self.suite, self.options.filter)
        for case in cases:
            repeats = self.options.repeat or case.repeat
            for target in self.suite.targets:
                self.units.append(Unit(case, target, build_request(case, target), repeats, [None] * repeats))
        total = sum(unit.repeats for unit in self.units)
        progress = self.options.progress
        if progress is not None:
            progress.start(self.suite.name, total)
        async with self.client.run(self.run_id):
            await self._schedule()
        if progress is not None:
            progress.finish(self.spent)
        return self.result(started_at)

    async def _schedule(self) -> None:
        limit = self.limit
        tasks: set[asyncio.Task[None]] = set()
        cap = self.options.max_cost
        for unit in self.units:
            for repeat in range(unit.repeats):
                await limit.acquire()
                if cap is not None and self.stop_reason is None and self.spent >= cap:
                    self.stop_reason = f"cost cap of ${cap:.2f} reached after {self._units_done()} of " \
                                       f"{len(self.units)} cases"  # fmt: skip
                if self.stop_reason is not None:
                    limit.release()
                    break
                task = asyncio.create_task(self._attempt(unit, repeat, limit.release))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
            if self.stop_reason is not None:
                break
        if tasks:
            await asyncio.gather(*tasks)

    def _units_done(self) -> int:
        return sum(all(a is not None for a in unit.attempts) for unit in self.units)

    async def _attempt(self, unit: Unit, repeat: int, release: Callable[[], None]) -> None:
        """The call holds a concurrency slot; the assertions do not (a `similar` waiting for its batch of embeddings
        lets the next calls start, so batches grow)."""
        try:
            observed, error = await self._observe(unit, repeat)
        except TargetUnreachable as exc:
            if self.stop_reason is None:
                self.stop_reason = f"target unreachable: {exc}"
            return
        finally:
            release()
        if observed is None:
            unit.attempts[repeat] = attempt_json(repeat, None, [], error, unit.case.threshold)
        else:
            context = CaseContext(unit.case.vars, self, unit.case.messages)
            results = [] if error else await self._assert_all(unit.case.assertions, observed, context)
            unit.attempts[repeat] = attempt_json(repeat, observed, results, error, unit.case.threshold)
            for result in results:
                if result.metric:
                    unit.metric_scores.setdefault(result.metric, []).append(result.score)
            if observed.prompt_version is not None:
                self.prompt_versions.setdefault(unit.target.id, observed.prompt_version)
        if self.options.progress is not None:
            self.options.progress.advance(self.spent)

    async def _observe(self, unit: Unit, repeat: int) -> tuple[Observed | None, str | None]:
        """The attempt's answer (from the cache or the client) and the call's error, if the call itself failed."""
        key = cache_key(self.client.scope, unit.target.id, unit.request, repeat) if self.cache.enabled else ""
        observed = self.cache.get(key) if key else None
        if observed is None:
            try:
                observed = await self.client.call(unit.request)
            except CallFailed as exc:
                return None, str(exc)
            self.target_cost += observed.cost_usd
            code = (observed.error or {}).get("code")
            if key and code != NOT_IN_CASSETTE:
                self.cache.put(key, observed)
        if observed.status >= 500 or (observed.error or {}).get("code") == NOT_IN_CASSETTE:
            error = observed.error or {}
            return observed, f"the call failed ({observed.status} {error.get('code')}): {error.get('message')}"
        return observed, None

    async def _assert_all(
        self, specs: Sequence[Any], observed: Observed, context: CaseContext
    ) -> list[AssertionResult]:
        """The attempt's assertions in order; `evaluate_many` embeds all its `similar` texts in one request."""
        if self.evaluate_many is not None and len(specs) > 1:
            try:
                return await self.evaluate_many([(spec, observed, context) for spec in specs])
            except Exception:  # noqa: BLE001 - one at a time below, so the one that raises errors alone
                pass
        return [await self._assert(spec, observed, context) for spec in specs]

    async def _assert(self, spec: Any, observed: Observed, context: CaseContext) -> AssertionResult:
        try:
            return await self.evaluate(spec, observed, context)
        except Exception as exc:  # noqa: BLE001 - an assertion that cannot be evaluated errors; the run goes on
            return AssertionResult(assertion_type(spec), False, 0.0, "could not be evaluated",
                                   weight=float(getattr(spec, "weight", 1.0) or 1.0),
                                   error=f"{type(exc).__name__}: {exc}")  # fmt: skip

    def result(self, started_at: str) -> dict[str, Any]:
        results = [unit_json(unit) for unit in self.units]
        counts = {"total": len(results), "passed": 0, "failed": 0, "errors": 0, "skipped": 0}
        for item in results:
            counts[
                {"passed": "passed", "failed": "failed", "error": "errors", "skipped": "skipped"}[item["status"]]
            ] += 1
        if self.stop_reason is not None:
            status = "incomplete"
        elif counts["failed"] or counts["errors"] or counts["skipped"]:
            status = "failed"
        else:
            status = "passed"
        suite = self.suite
        return {
            "format": FORMAT,
            "run_id": self.run_id,
            "suite": {"name": suite.name, "path": display_path(suite.path), "sha256": suite.sha256},
            "targets": [self._target_json(t) for t in suite.targets],
            "git_commit": git_commit(Path(suite.path).resolve().parent),
            "started_at": started_at,
            "finished_at": now_iso(),
            "status": status,
            "incomplete_reason": self.stop_reason,
            "counts": counts,
            "pass_rate": round(counts["passed"] / counts["total"], 6) if counts["total"] else 1.0,
            "cost_usd": {"target": round(self.target_cost, 9), "judge": round(self.judge_cost, 9)},
            "metrics": run_metrics(self.units),
            "results": results,
        }

    def _target_json(self, target: Any) -> dict[str, Any]:
        prompt = target.kind == "prompt"
        version = target.version if target.version is not None else self.prompt_versions.get(target.id)
        return {
            "id": target.id,
            "kind": target.kind,
            "model": None if prompt else target.model,
            "prompt_id": target.prompt_id if prompt else None,
            "prompt_version": version if prompt else None,
        }


async def run_suite(
    suite: Any,
    client: EvalClient,
    cache: ResponseCache,
    options: RunOptions,
    evaluate: Evaluate | None = None,
    evaluate_many: EvaluateMany | None = None,
) -> dict[str, Any]:
    """Runs one loaded suite and returns its canonical result (also when the run stopped early). `evaluate` defaults
    to the assertions package's (with its batching `evaluate_many`)."""
    if evaluate is None:
        from gateway.evals import assertions

        evaluate = assertions.evaluate  # type: ignore[attr-defined]
        evaluate_many = getattr(assertions, "evaluate_many", None)
    return await SuiteRun(suite, client, cache, options, evaluate, evaluate_many).run()
