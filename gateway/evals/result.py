"""RunResult: the canonical eval run result (`gateway-eval-result/1`) as the store and /admin/evals/runs validate it.

The runner writes this JSON (the `--json` report, what `--baseline` reads); the store keeps it whole and reads a few
fields into columns. The top level, the suite and the targets are strict (an unknown key is an error with its path);
a case result and its attempts only need the fields the store reads, so reports may carry more per attempt.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from gateway.errors import InvalidRequest

FORMAT = "gateway-eval-result/1"
RUN_ID_PATTERN = r"^evr_[0-9A-Za-z]{20,40}$"
Status = Literal["passed", "failed", "incomplete"]
CaseStatus = Literal["passed", "failed", "error", "skipped"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SuiteRef(_Strict):
    name: str = Field(min_length=1)
    path: str = Field(min_length=1)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")


class TargetRef(_Strict):
    id: str = Field(min_length=1)
    kind: Literal["prompt", "model"]
    model: str | None = None
    prompt_id: str | None = None
    prompt_version: int | None = Field(default=None, ge=1)

    @model_validator(mode="after")
    def _named(self) -> TargetRef:
        if self.kind == "prompt" and not self.prompt_id:
            raise ValueError("a prompt target needs its prompt_id")
        if self.kind == "model" and not self.model:
            raise ValueError("a model target needs its model")
        return self


class Counts(_Strict):
    total: int = Field(ge=0)
    passed: int = Field(ge=0)
    failed: int = Field(ge=0)
    errors: int = Field(ge=0)
    skipped: int = Field(ge=0)


class Costs(_Strict):
    target: float = Field(ge=0)
    judge: float = Field(ge=0)


class CaseResult(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)

    case_id: str = Field(min_length=1)
    target: str
    status: CaseStatus
    pass_rate: float = Field(ge=0, le=1)
    attempts: list[dict[str, Any]] = Field(default_factory=list)


class RunResult(_Strict):
    format: Literal["gateway-eval-result/1"]
    run_id: str = Field(pattern=RUN_ID_PATTERN)
    suite: SuiteRef
    targets: list[TargetRef] = Field(min_length=1)
    git_commit: str | None = None
    started_at: datetime
    finished_at: datetime | None = None
    status: Status
    incomplete_reason: str | None = None
    counts: Counts
    pass_rate: float = Field(ge=0, le=1)
    cost_usd: Costs
    metrics: dict[str, float] = Field(default_factory=dict)
    results: list[CaseResult]

    @model_validator(mode="after")
    def _references(self) -> RunResult:
        ids = [target.id for target in self.targets]
        if len(set(ids)) != len(ids):
            raise ValueError(f"targets: a target id is listed twice ({', '.join(ids)})")
        known = set(ids)
        for i, case in enumerate(self.results):
            if case.target not in known:
                raise ValueError(f"results[{i}].target: {case.target!r} is not one of the run's targets")
        return self


def parse_result(data: object) -> RunResult:
    """The result, validated; raises InvalidRequest naming the first bad field's path (`param`)."""
    if not isinstance(data, dict):
        raise InvalidRequest(f"An eval run result is a JSON object ({FORMAT}); got {type(data).__name__}.")
    if data.get("format") != FORMAT:
        raise InvalidRequest(
            f"Unknown eval result format {data.get('format')!r}; this gateway stores {FORMAT!r}.", param="format"
        )
    try:
        return RunResult.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        path = ""
        for part in first["loc"]:
            path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
        message = first["msg"].removeprefix("Value error, ")
        raise InvalidRequest(f"Invalid eval result: {path or '(root)'}: {message}", param=path or None) from None
