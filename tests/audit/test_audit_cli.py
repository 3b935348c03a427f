"""Tests for `gateway audit verify|export|prune` (gateway.audit.cli), on a SQLite database named by a config file."""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
from contextlib import closing
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest
from audit_samples import chain, event

from gateway.audit.cli import add_audit_commands
from gateway.storage.db import open_database


def gateway(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="gateway")
    add_audit_commands(parser.add_subparsers())  # as gateway/cli.py's build_parser does
    args = parser.parse_args(argv)
    return int(args.handler(args))


@pytest.fixture
def database(tmp_path: Path) -> Path:
    return tmp_path / "audit.db"


@pytest.fixture
def config(tmp_path: Path, database: Path) -> str:
    path = tmp_path / "gateway.yaml"
    path.write_text(f"database_url: sqlite:///{database}\n")
    return str(path)


def seed(database: Path, *days_ago: int) -> None:
    now = datetime.now(UTC)

    async def write() -> None:
        async with open_database(f"sqlite:///{database}") as db:
            await chain(db, [event(n, occurred_at=now - timedelta(days=d)) for n, d in enumerate(days_ago, 1)])

    asyncio.run(write())


def test_audit_verify_ok_then_names_the_edited_record(
    config: str, database: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    seed(database, 3, 2, 1)
    assert gateway("audit", "verify", "--config", config) == 0
    assert capsys.readouterr().out.startswith("ok: 3 records, seq 1-3, head hash ")
    with closing(sqlite3.connect(database)) as connection, connection:
        connection.execute("UPDATE audit_records SET details = '{}' WHERE seq = 2")
    assert gateway("audit", "verify", "--config", config) == 1
    assert capsys.readouterr().out == (
        "BROKEN at seq 2: hash mismatch: the record's content was edited after it was written "
        "(1 records before it are intact)\n"
    )


def test_audit_verify_empty_database(config: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert gateway("audit", "verify", "--config", config) == 0
    assert capsys.readouterr().out == "ok: the audit log is empty\n"


def test_audit_export_writes_the_range_to_a_file(
    config: str, database: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    seed(database, 10, 5, 1)
    start = (datetime.now(UTC) - timedelta(days=7)).date().isoformat()  # a date: midnight UTC
    out = tmp_path / "audit.jsonl"
    assert gateway("audit", "export", "--from", start, "--out", str(out), "--config", config) == 0
    assert [orjson.loads(line)["seq"] for line in out.read_bytes().splitlines()] == [2, 3]
    assert capsys.readouterr().err == "exported 2 audit records\n"


def test_audit_prune_keeps_the_recent_records_and_a_verifiable_chain(
    config: str, database: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    seed(database, 400, 300, 10)
    assert gateway("audit", "prune", "--older-than-days", "365", "--config", config) == 0
    assert capsys.readouterr().out == "pruned 1 audit records older than 365 days\n"
    assert gateway("audit", "verify", "--config", config) == 0
    assert capsys.readouterr().out.startswith("ok: 3 records, seq 2-4")  # 2, 3 and the audit.pruned event
    assert gateway("audit", "prune", "--older-than-days", "0", "--config", config) == 2
