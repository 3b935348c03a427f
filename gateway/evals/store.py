"""EvalRunStore: stored eval runs (table eval_runs, one row per run and target); the only module that touches it.

`save` validates a canonical result and writes a row per target, with that target's own status, pass rate and
counts; `passing_run` is the promotion gate's one indexed lookup, for prompt versions now and model aliases later.
"""

from __future__ import annotations

import builtins
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Literal

import orjson
from sqlalchemy import and_, or_
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import defer
from sqlmodel import col, select

from gateway.errors import Conflict, EvalRunNotFound, InvalidRequest
from gateway.evals.result import RunResult, TargetRef, parse_result
from gateway.storage.db import Database
from gateway.storage.tables import EvalRun

TargetKind = Literal["prompt", "model"]
MAX_LIST = 200


def target_counts(result: RunResult, target: TargetRef) -> tuple[str, float, dict[str, int]]:
    """(status, pass_rate, counts) of one target: its (case, target) units only; skipped units do not count."""
    statuses = [case.status for case in result.results if case.target == target.id]
    counts = {
        "total": len(statuses),
        "passed": statuses.count("passed"),
        "failed": statuses.count("failed"),
        "errors": statuses.count("error"),
        "skipped": statuses.count("skipped"),
    }
    ran = counts["total"] - counts["skipped"]
    pass_rate = counts["passed"] / ran if ran else 0.0
    if result.status == "incomplete":
        status = "incomplete"
    else:
        status = "passed" if ran and counts["passed"] == ran else "failed"
    return status, pass_rate, counts


def run_summary(rows: Sequence[EvalRun]) -> dict[str, object]:
    """One run as the list shows it (everything but the case results), from its rows in target order."""
    first = rows[0]
    return {
        "id": first.run_id,
        "object": "eval.run",
        "suite": {"name": first.suite_name, "path": first.suite_path, "sha256": first.suite_sha256},
        "status": first.run_status,
        "targets": [
            {
                "id": row.target_id,
                "kind": row.target_kind,
                "model": row.model,
                "prompt_id": row.prompt_id,
                "prompt_version": row.prompt_version,
                "status": row.status,
                "pass_rate": row.pass_rate,
                "counts": row.counts,
            }
            for row in rows
        ],  # fmt: skip
        "git_commit": first.git_commit,
        "cost_usd": {"target": first.cost_usd_target, "judge": first.cost_usd_judge},
        "started_at": first.started_at.isoformat(),
        "finished_at": first.finished_at.isoformat() if first.finished_at else None,
        "created_at": first.created_at.isoformat(),
    }


class EvalRunStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def save(self, data: object) -> RunResult:
        """Stores a canonical result, one row per target. Saving the same result again is a no-op; another result
        under a stored run id raises Conflict (409). Raises InvalidRequest (400, `param` = the field path) for a
        result that is not a valid `gateway-eval-result/1`."""
        result = parse_result(data)
        stored = orjson.loads(orjson.dumps(data))  # the result as given, as plain JSON
        now = datetime.now(UTC)
        finished = aware(result.finished_at) if result.finished_at else None
        rows = []
        for i, target in enumerate(result.targets):
            status, pass_rate, counts = target_counts(result, target)
            rows.append(EvalRun(
                run_id=result.run_id, target_id=target.id, position=i, suite_name=result.suite.name,
                suite_path=result.suite.path, suite_sha256=result.suite.sha256, target_kind=target.kind,
                prompt_id=target.prompt_id, prompt_version=target.prompt_version, model=target.model,
                git_commit=result.git_commit, status=status, run_status=result.status, pass_rate=pass_rate,
                counts=counts, cost_usd_target=result.cost_usd.target, cost_usd_judge=result.cost_usd.judge,
                started_at=aware(result.started_at), finished_at=finished,
                created_at=now, result=stored if i == 0 else None,
            ))  # fmt: skip
        try:
            async with self.db.session() as session:
                session.add_all(rows)
                await session.commit()
        except IntegrityError:
            if await self.get(result.run_id) != stored:
                raise Conflict(
                    f"Eval run {result.run_id} is already stored with other results; a new run needs a new run_id.",
                    param="run_id",
                    code="eval_run_exists",
                ) from None
        return result

    async def get(self, run_id: str) -> dict[str, object]:
        """The canonical result as stored; raises EvalRunNotFound (404)."""
        query = select(EvalRun.result).where(EvalRun.run_id == run_id, col(EvalRun.result).is_not(None))
        async with self.db.session() as session:
            found = (await session.exec(query)).first()
        if found is None:
            raise EvalRunNotFound(f"No eval run {run_id!r}; GET /admin/evals/runs lists them.", param="run_id")
        return found

    async def describe(self, run_id: str) -> dict[str, object]:
        """The run's summary, as `list` gives it; raises EvalRunNotFound (404)."""
        query = select(EvalRun).options(defer(col(EvalRun.result))).where(EvalRun.run_id == run_id)
        async with self.db.session() as session:
            rows = (await session.exec(query.order_by(col(EvalRun.position)))).all()
        if not rows:
            raise EvalRunNotFound(f"No eval run {run_id!r}; GET /admin/evals/runs lists them.", param="run_id")
        return run_summary(rows)

    async def list(
        self,
        *,
        suite: str | None = None,
        target: str | None = None,
        status: str | None = None,
        limit: int = 50,
        before: str | None = None,
    ) -> tuple[builtins.list[dict[str, object]], bool]:
        """Run summaries, newest first, and whether more are older. `suite` matches the suite's name or path,
        `target` a target id (a run matches when any of its targets does), `status` the run's status; `before` is
        the id of a run: the page starts after it. Raises EvalRunNotFound for an unknown `before`."""
        if not 1 <= limit <= MAX_LIST:
            raise InvalidRequest(f"limit must be between 1 and {MAX_LIST}.", param="limit")
        runs = select(EvalRun.run_id, EvalRun.created_at).distinct()
        if suite is not None:
            runs = runs.where(or_(EvalRun.suite_name == suite, EvalRun.suite_path == suite))
        if target is not None:
            runs = runs.where(EvalRun.target_id == target)
        if status is not None:
            runs = runs.where(EvalRun.run_status == status)
        async with self.db.session() as session:
            if before is not None:
                cursor = (await session.exec(select(EvalRun.created_at).where(EvalRun.run_id == before))).first()
                if cursor is None:
                    raise EvalRunNotFound(f"No eval run {before!r} to page from.", param="before")
                older = col(EvalRun.created_at) < cursor
                runs = runs.where(or_(older, and_(col(EvalRun.created_at) == cursor, col(EvalRun.run_id) < before)))
            page = runs.order_by(col(EvalRun.created_at).desc(), col(EvalRun.run_id).desc()).limit(limit + 1)
            ids = [run_id for run_id, _ in (await session.exec(page)).all()]
            query = select(EvalRun).options(defer(col(EvalRun.result))).where(col(EvalRun.run_id).in_(ids[:limit]))
            rows = (await session.exec(query.order_by(col(EvalRun.position)))).all()
        by_run: dict[str, list[EvalRun]] = {}
        for row in rows:
            by_run.setdefault(row.run_id, []).append(row)
        data = [run_summary(by_run[run_id]) for run_id in ids[:limit]]
        return data, len(ids) > limit

    async def passing_run(
        self,
        suite_sha256: str,
        *,
        kind: TargetKind,
        name: str,
        version: int | None,
        min_pass_rate: float,
    ) -> str | None:
        """The newest run of the suite (by its sha256) against this target version that finished with at least
        `min_pass_rate`, or None. kind "prompt": name is the prompt id, version its version; kind "model": name is
        the model's public name (version: reserved for model aliases, None today)."""
        query = select(EvalRun.run_id).where(
            EvalRun.suite_sha256 == suite_sha256,
            EvalRun.target_kind == kind,
            EvalRun.status != "incomplete",
            col(EvalRun.pass_rate) >= min_pass_rate,
        )
        if kind == "prompt":
            query = query.where(EvalRun.prompt_id == name, EvalRun.prompt_version == version)
        else:
            query = query.where(EvalRun.model == name)
        query = query.order_by(col(EvalRun.created_at).desc(), col(EvalRun.run_id).desc()).limit(1)
        async with self.db.session() as session:
            return (await session.exec(query)).first()


def aware(value: datetime) -> datetime:
    """A result's timestamp in UTC (one without an offset is taken as UTC)."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
