"""Tests for gateway.usage.report against real SQLite and PostgreSQL: exact sums per key, team, model, day."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta, timezone

import orjson
import psycopg
import pytest
from psycopg import sql
from sqlalchemy import create_engine, make_url
from sqlmodel import Session

from gateway.storage.db import Database, open_database, run_migrations
from gateway.storage.tables import UsageRecord
from gateway.usage.report import (
    GroupBy,
    ScopeColumn,
    UsageRow,
    render_csv,
    render_json,
    render_table,
    spent_by_scope,
    usage_report,
)

POSTGRES_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
PLUS_2 = timezone(timedelta(hours=2))


def at(day: int, hour: int, tz: timezone = UTC) -> datetime:
    return datetime(2026, 1, day, hour, tzinfo=tz)


# (request_id, key_id, team_id, model, created_at, status, prompt, completion, cached, cost_nanos)
RECORDS = [
    ("r1", "key_a", "team_x", "gpt-a", at(1, 23), 200, 10, 5, 1, 100_000_000),
    ("r2", "key_a", "team_x", "gpt-b", at(2, 0, PLUS_2), 200, 20, 6, 0, 200_000_000),  # 1 Jan 22:00 UTC
    ("r3", "key_b", "team_x", "gpt-a", at(2, 10), 429, 30, 0, 0, 0),
    ("r4", "key_c", None, "gpt-a", at(3, 0), 200, 40, 7, 2, 123_456_789_012),  # over 2**31 nanos
    ("r5", None, None, "gpt-b", at(3, 12), 500, 50, 0, 0, 1),
]


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A database holding RECORDS and nothing else, built once per module: the reports only read it."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('report')}/gateway.db"
    else:
        name = f"gateway_test_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as admin:
            admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        url = f"postgresql://postgres@127.0.0.1:5432/{name}"
    run_migrations(url)
    engine = create_engine(
        make_url(url).set(drivername="sqlite" if request.param == "sqlite" else "postgresql+psycopg")
    )
    with Session(engine) as session:
        session.add_all(usage_record(*fields) for fields in RECORDS)
        session.commit()
    engine.dispose()
    yield url
    if request.param == "postgres":
        with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[Database]:
    async with open_database(database_url) as database:
        yield database


def usage_record(
    request_id: str,
    key_id: str | None,
    team_id: str | None,
    model: str,
    created_at: datetime,
    status_code: int,
    prompt_tokens: int,
    completion_tokens: int,
    cached_tokens: int,
    cost_nanos: int,
) -> UsageRecord:
    return UsageRecord(
        request_id=request_id,
        key_id=key_id,
        team_id=team_id,
        model=model,
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
        cached_tokens=cached_tokens,
        cost_nanos=cost_nanos,
        cost_usd=cost_nanos / 1e9,
        latency_ms=100.0,
        overhead_ms=1.0,
        status_code=status_code,
        stream=False,
        created_at=created_at,
    )


def row(group: str, requests: int, errors: int, tokens: tuple[int, int, int], cost_nanos: int) -> UsageRow:
    prompt, completion, cached = tokens
    return UsageRow(
        group=group,
        requests=requests,
        errors=errors,
        prompt_tokens=prompt,
        completion_tokens=completion,
        cached_tokens=cached,
        cost_nanos=cost_nanos,
        cost_usd=cost_nanos / 1e9,
    )


@pytest.mark.parametrize(
    ("group_by", "filters", "expected"),
    [
        (
            "key",
            {},
            [
                row("", 1, 1, (50, 0, 0), 1),  # the master key's calls carry no key id
                row("key_a", 2, 0, (30, 11, 1), 300_000_000),
                row("key_b", 1, 1, (30, 0, 0), 0),
                row("key_c", 1, 0, (40, 7, 2), 123_456_789_012),
            ],
        ),
        ("team", {}, [row("", 2, 1, (90, 7, 2), 123_456_789_013), row("team_x", 3, 1, (60, 11, 1), 300_000_000)]),
        (
            "model",
            {},
            [row("gpt-a", 3, 1, (80, 12, 3), 123_556_789_012), row("gpt-b", 2, 1, (70, 6, 0), 200_000_001)],
        ),
        (
            "day",  # by UTC day: r2, written at 00:00 +02:00, belongs to 1 January
            {},
            [
                row("2026-01-01", 2, 0, (30, 11, 1), 300_000_000),
                row("2026-01-02", 1, 1, (30, 0, 0), 0),
                row("2026-01-03", 2, 1, (90, 7, 2), 123_456_789_013),
            ],
        ),
        (
            "day",  # start inclusive, end exclusive; an offset in the bounds is honoured
            {"start": at(1, 23), "end": at(3, 2, PLUS_2)},
            [row("2026-01-01", 1, 0, (10, 5, 1), 100_000_000), row("2026-01-02", 1, 1, (30, 0, 0), 0)],
        ),
        (
            "model",
            {"key_id": "key_a"},
            [row("gpt-a", 1, 0, (10, 5, 1), 100_000_000), row("gpt-b", 1, 0, (20, 6, 0), 200_000_000)],
        ),
        ("key", {"team_id": "team_x", "start": at(2, 0)}, [row("key_b", 1, 1, (30, 0, 0), 0)]),
        ("key", {"start": at(4, 0)}, []),
    ],
)
async def test_usage_report_groups_and_sums_exactly(
    db: Database, group_by: GroupBy, filters: dict[str, object], expected: list[UsageRow]
) -> None:
    bounds = {"start": None, "end": None, **filters}
    assert await usage_report(db, group_by=group_by, **bounds) == expected  # type: ignore[arg-type]


async def test_usage_report_cost_usd_is_the_exact_nano_sum(db: Database) -> None:
    [key_a] = await usage_report(db, group_by="key", start=None, end=None, key_id="key_a")
    assert key_a.cost_usd == 0.3  # 0.1 + 0.2 summed as floats would be 0.30000000000000004


async def test_usage_report_naive_bound_raises(db: Database) -> None:
    with pytest.raises(ValueError, match="start=2026-01-01T00:00:00 has no timezone"):
        await usage_report(db, group_by="key", start=datetime(2026, 1, 1), end=None)


@pytest.mark.parametrize(
    ("column", "since", "expected"),
    [
        ("key_id", at(1, 0), {"key_a": 300_000_000, "key_b": 0, "key_c": 123_456_789_012}),
        ("key_id", at(2, 0), {"key_b": 0, "key_c": 123_456_789_012}),
        ("team_id", at(1, 0), {"team_x": 300_000_000}),
        ("team_id", at(3, 0), {}),
    ],
)
async def test_spent_by_scope_sums_nanos_since(
    db: Database, column: ScopeColumn, since: datetime, expected: dict[str, int]
) -> None:
    assert await spent_by_scope(db, since=since, column=column) == expected


ROWS = [row("", 1, 1, (50, 0, 0), 1), row("key_a", 2, 0, (30, 11, 1), 1_234_567_891)]


def test_render_table_aligns_columns_and_adds_a_total() -> None:
    assert render_table(ROWS) == (
        "group   requests  errors  prompt_tokens  completion_tokens  cached_tokens  cost_usd\n"
        "(none)         1       1             50                  0              0  0.000000\n"
        "key_a          2       0             30                 11              1  1.234568\n"
        "-----------------------------------------------------------------------------------\n"
        "total          3       1             80                 11              1  1.234568\n"
    )
    assert render_table([]) == "group  requests  errors  prompt_tokens  completion_tokens  cached_tokens  cost_usd\n"


def test_render_csv_writes_cost_to_the_nano() -> None:
    assert render_csv(ROWS) == (
        "group,requests,errors,prompt_tokens,completion_tokens,cached_tokens,cost_usd\n"
        ",1,1,50,0,0,0.000000001\n"
        "key_a,2,0,30,11,1,1.234567891\n"
    )


def test_render_json_keeps_every_field() -> None:
    assert orjson.loads(render_json(ROWS)) == [r.model_dump() for r in ROWS]
    assert orjson.loads(render_json(ROWS))[1]["cost_nanos"] == 1_234_567_891


async def test_usage_report_groups_by_prompt_version(db: Database) -> None:
    records = [usage_record(f"p{i}", "key_p", None, "gpt-p", at(9, i), 200, 10, 1, 0, 5) for i in range(4)]
    prompts = [("triage", 1), ("triage", 2), ("triage", 2), (None, None)]
    for record, (prompt_id, version) in zip(records, prompts, strict=True):
        record.prompt_id, record.prompt_version = prompt_id, version
    async with db.session() as session:
        session.add_all(records)
        await session.commit()
    got = await usage_report(db, group_by="prompt", start=at(9, 0), end=at(10, 0))
    assert got == [
        row("", 1, 0, (10, 1, 0), 5),
        row("triage@1", 1, 0, (10, 1, 0), 5),
        row("triage@2", 2, 0, (20, 2, 0), 10),
    ]
