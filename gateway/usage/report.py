"""Usage reports: tokens and cost grouped by key, team, model, day or prompt version."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from datetime import datetime
from typing import Literal

import orjson
from pydantic import BaseModel, ConfigDict
from sqlalchemy import SQLColumnExpression, String, case, cast, func, literal_column
from sqlmodel import col, select

from gateway.storage.db import Database
from gateway.storage.tables import UsageRecord
from gateway.usage.pricing import NANOS_PER_USD, usd

GroupBy = Literal["key", "team", "model", "day", "prompt"]
ScopeColumn = Literal["key_id", "team_id"]
_COLUMNS = ("group", "requests", "errors", "prompt_tokens", "completion_tokens", "cached_tokens", "cost_usd")


class UsageRow(BaseModel):
    """One group's totals. `group` is a key id, team id, model name, UTC day (YYYY-MM-DD) or prompt version
    (`support-triage@3`).

    Records made without a key, team or prompt are grouped under "" when grouping by that.
    """

    model_config = ConfigDict(frozen=True)

    group: str
    requests: int
    errors: int  # responses with status_code >= 400
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int
    cost_nanos: int  # exact: summed in integer nano-USD
    cost_usd: float  # cost_nanos / 1e9, for display


async def usage_report(
    db: Database,
    *,
    group_by: GroupBy,
    start: datetime | None,
    end: datetime | None,
    key_id: str | None = None,
    team_id: str | None = None,
) -> list[UsageRow]:
    """Totals per group for records created in [start, end), optionally of one key or team, sorted by group.

    Raises ValueError for a naive start or end (timestamps are UTC; pass aware datetimes).
    """
    _require_aware(start=start, end=end)
    group = _group_expression(group_by, db.engine.dialect.name)
    statement = select(  # type: ignore[call-overload]  # typed for up to four columns; works with any number
        group,
        func.count(),
        func.sum(case((col(UsageRecord.status_code) >= 400, 1), else_=0)),
        func.sum(col(UsageRecord.prompt_tokens)),
        func.sum(col(UsageRecord.completion_tokens)),
        func.sum(col(UsageRecord.cached_tokens)),
        func.sum(col(UsageRecord.cost_nanos)),
    ).group_by(group)
    if start is not None:
        statement = statement.where(col(UsageRecord.created_at) >= start)
    if end is not None:
        statement = statement.where(col(UsageRecord.created_at) < end)
    if key_id is not None:
        statement = statement.where(col(UsageRecord.key_id) == key_id)
    if team_id is not None:
        statement = statement.where(col(UsageRecord.team_id) == team_id)
    async with db.session() as session:
        result = (await session.exec(statement)).all()
    # int(): Postgres sums BIGINT as NUMERIC, which psycopg returns as Decimal.
    rows = [
        UsageRow(
            group=name or "",
            requests=int(requests),
            errors=int(errors),
            prompt_tokens=int(prompt),
            completion_tokens=int(completion),
            cached_tokens=int(cached),
            cost_nanos=int(cost),
            cost_usd=usd(int(cost)),
        )
        for name, requests, errors, prompt, completion, cached, cost in result
    ]
    # Sorted here, not in SQL: Postgres collations and SQLite's byte order disagree on mixed case.
    return sorted(rows, key=lambda row: row.group)


async def spent_by_scope(db: Database, *, since: datetime, column: ScopeColumn) -> dict[str, int]:
    """Nano-USD spent per key (or team) on records created at or after `since`; seeds the budget counters.

    Raises ValueError for a naive `since`.
    """
    _require_aware(since=since)
    scope = col(UsageRecord.key_id) if column == "key_id" else col(UsageRecord.team_id)
    statement = (
        select(scope, func.sum(col(UsageRecord.cost_nanos)))
        .where(scope.is_not(None), col(UsageRecord.created_at) >= since)
        .group_by(scope)
    )
    async with db.session() as session:
        result = (await session.exec(statement)).all()
    return {scope_id: int(total) for scope_id, total in result if scope_id is not None}


def render_table(rows: Sequence[UsageRow]) -> str:
    """Aligned columns with a total line, for a terminal."""
    body = [_cells(row, cost=f"{row.cost_usd:.6f}", group=row.group or "(none)") for row in rows]
    if rows:
        total = _total(rows)
        body.append(_cells(total, cost=f"{total.cost_usd:.6f}"))
    widths = [max(len(cell) for cell in column) for column in zip(_COLUMNS, *body, strict=True)]
    lines = [_align(list(_COLUMNS), widths)] + [_align(cells, widths) for cells in body]
    if rows:
        lines.insert(-1, "-" * len(lines[0]))
    return "\n".join(lines) + "\n"


def render_csv(rows: Sequence[UsageRow]) -> str:
    """CSV with a header line; cost_usd is written exactly, to the nano-dollar."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(_COLUMNS)
    writer.writerows(_cells(row, cost=_exact_usd(row.cost_nanos)) for row in rows)
    return buffer.getvalue()


def render_json(rows: Sequence[UsageRow]) -> str:
    """A JSON array of the rows, cost in both nano-USD and USD."""
    return orjson.dumps([row.model_dump() for row in rows], option=orjson.OPT_INDENT_2).decode() + "\n"


def _group_expression(group_by: GroupBy, dialect: str) -> SQLColumnExpression[str | None]:
    if group_by == "key":
        return col(UsageRecord.key_id)
    if group_by == "team":
        return col(UsageRecord.team_id)
    if group_by == "model":
        return col(UsageRecord.model)
    if group_by == "prompt":  # NULL (no prompt) stays NULL: concatenating with NULL gives NULL
        return col(UsageRecord.prompt_id).concat("@").concat(cast(col(UsageRecord.prompt_version), String))
    created_at = col(UsageRecord.created_at)
    # Literal SQL, not bound parameters: Postgres only matches the GROUP BY to the SELECT if they are equal.
    if dialect == "postgresql":
        utc = func.timezone(literal_column("'UTC'"), created_at)
        return func.to_char(utc, literal_column("'YYYY-MM-DD'"), type_=String)
    return func.date(created_at, type_=String)  # SQLite keeps created_at as UTC text, '2026-01-02 03:04:05.000000'


def _require_aware(**bounds: datetime | None) -> None:
    for name, value in bounds.items():
        if value is not None and value.tzinfo is None:
            raise ValueError(f"{name}={value.isoformat()} has no timezone; pass an aware datetime (UTC).")


def _total(rows: Sequence[UsageRow]) -> UsageRow:
    cost = sum(row.cost_nanos for row in rows)
    return UsageRow(
        group="total",
        requests=sum(row.requests for row in rows),
        errors=sum(row.errors for row in rows),
        prompt_tokens=sum(row.prompt_tokens for row in rows),
        completion_tokens=sum(row.completion_tokens for row in rows),
        cached_tokens=sum(row.cached_tokens for row in rows),
        cost_nanos=cost,
        cost_usd=usd(cost),
    )


def _cells(row: UsageRow, *, cost: str, group: str | None = None) -> list[str]:
    counts = (row.requests, row.errors, row.prompt_tokens, row.completion_tokens, row.cached_tokens)
    return [row.group if group is None else group, *(str(count) for count in counts), cost]


def _align(cells: list[str], widths: list[int]) -> str:
    first, *numbers = zip(cells, widths, strict=True)
    return "  ".join([first[0].ljust(first[1]), *(cell.rjust(width) for cell, width in numbers)]).rstrip()


def _exact_usd(nanos: int) -> str:
    dollars, rest = divmod(nanos, NANOS_PER_USD)
    return f"{dollars}.{rest:09d}"
