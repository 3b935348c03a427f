"""Usage reports: the queries of tokens and cost grouped by key, team, model, day or prompt version (rows.py
renders them)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from sqlalchemy import SQLColumnExpression, String, case, cast, func, literal_column
from sqlmodel import col, select

from gateway.storage.db import Database
from gateway.storage.tables import UsageRecord
from gateway.usage.money import usd
from gateway.usage.rows import UsageRow, render_csv, render_json, render_table

__all__ = ["UsageRow", "render_csv", "render_json", "render_table", "spent_by_scope", "usage_report"]

GroupBy = Literal["key", "team", "model", "day", "prompt"]
ScopeColumn = Literal["key_id", "team_id"]


async def usage_report(
    db: Database,
    *,
    group_by: GroupBy,
    start: datetime | None,
    end: datetime | None,
    key_id: str | None = None,
    team_id: str | None = None,
    eval_run_id: str | None = None,
) -> list[UsageRow]:
    """Totals per group for records created in [start, end), optionally of one key, team or eval run, sorted by
    group.

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
    if eval_run_id is not None:
        statement = statement.where(col(UsageRecord.eval_run_id) == eval_run_id)
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
