"""Tests for gateway.audit.records: JSONL export of a time range, each line checkable on its own."""

from __future__ import annotations

import io
from datetime import timedelta

import orjson
from audit_samples import T0, chain, event

from gateway.audit.events import GENESIS_HASH, record_hash
from gateway.audit.records import export, list_records
from gateway.storage.db import Database


async def test_export_writes_the_time_range_as_json_lines_in_seq_order(db: Database) -> None:
    await chain(db, [event(n) for n in range(1, 8)])
    out = io.BytesIO()
    assert await export(db, T0 + timedelta(minutes=3), T0 + timedelta(minutes=6), out) == 3
    lines = [orjson.loads(line) for line in out.getvalue().splitlines()]
    assert [(line["seq"], line["subject"]) for line in lines] == [(3, "req_0003"), (4, "req_0004"), (5, "req_0005")]
    assert lines[0]["occurred_at"] == "2026-01-02T03:07:05.123456+00:00"
    assert lines[0]["details"] == {"tool": "refund", "amount": 31.5, "order": {"id": 3, "tags": ["a", "b"]}}
    for line in lines:  # the export holds exactly what each hash covers: checkable without the database
        assert record_hash(line["prev_hash"], line, line["seq"]) == line["hash"]
    assert [a["hash"] for a in lines[:-1]] == [b["prev_hash"] for b in lines[1:]]


async def test_export_without_bounds_writes_everything(db: Database) -> None:
    await chain(db, [event(n) for n in range(1, 4)])
    out = io.BytesIO()
    assert await export(db, None, None, out) == 3
    assert orjson.loads(out.getvalue().splitlines()[0])["prev_hash"] == GENESIS_HASH


async def test_list_records_action_prefix_matches_literally(db: Database) -> None:
    await chain(db, [event(1, action="prompt.label_moved"), event(2, action="prompt.labelxmoved")])
    assert [r.seq for r in await list_records(db, action="prompt.label_*")] == [1]  # "_" is not a wildcard
