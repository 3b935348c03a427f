"""`gateway audit verify|export|prune`: the audit log's CLI, straight on the configured database."""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the database (SQLAlchemy) loads only when a command runs, not for `gateway audit --help`
    from gateway.audit.chain import VerifyResult
    from gateway.storage.db import Database


def add_audit_commands(commands) -> None:  # type: ignore[no-untyped-def]
    audit = commands.add_parser("audit", help="verify, export and prune the hash-chained audit log")
    actions = audit.add_subparsers(dest="action", required=True)
    check = actions.add_parser("verify", help="recompute the chain; names the first broken record, exit 1 if any")
    out = actions.add_parser("export", help="write the records of a time range as JSON lines")
    out.add_argument("--from", dest="start", type=instant, help="ISO date or date-time (UTC unless an offset is given)")
    out.add_argument("--to", dest="end", type=instant, help="exclusive end, ISO date or date-time")
    out.add_argument("--out", type=Path, help="file to write (default: standard output)")
    cut = actions.add_parser("prune", help="delete the oldest records, keeping the chain verifiable")
    cut.add_argument("--older-than-days", type=int, required=True, help="the EU AI Act asks >= 183 for high-risk")
    for parser in (check, out, cut):
        parser.add_argument("--config", type=Path, help="config file (default: $GATEWAY_CONFIG or ./gateway.yaml)")
    audit.set_defaults(handler=cmd_audit)


def instant(value: str) -> datetime:
    """An ISO date (midnight UTC) or date-time (UTC when no offset is given)."""
    parsed = datetime.fromisoformat(value)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def cmd_audit(args: argparse.Namespace) -> int:
    import asyncio

    from gateway.settings import Settings
    from gateway.storage.db import MigrationError

    settings = Settings(config=args.config) if args.config else Settings()
    database_url = settings.resolve().database_url
    try:
        return asyncio.run(run(args, database_url))
    except MigrationError as exc:
        print(f"gateway: {exc}", file=sys.stderr)
        return 2


async def run(args: argparse.Namespace, database_url: str) -> int:
    from gateway.audit.chain import verify
    from gateway.audit.retention import AuditChainBrokenError, prune
    from gateway.storage.db import open_database

    async with open_database(database_url) as db:
        if args.action == "verify":
            result = await verify(db)
            print(describe(result))
            return 0 if result.ok else 1
        if args.action == "export":
            return await run_export(db, args)
        if args.older_than_days < 1:
            print("gateway: --older-than-days must be at least 1", file=sys.stderr)
            return 2
        try:
            pruned = await prune(
                db, datetime.now(UTC) - timedelta(days=args.older_than_days), reason="gateway audit prune"
            )
        except AuditChainBrokenError as exc:
            print(f"gateway: {exc}", file=sys.stderr)
            return 1
        print(f"pruned {pruned} audit records older than {args.older_than_days} days")
        return 0


async def run_export(db: Database, args: argparse.Namespace) -> int:
    from gateway.audit.records import export

    if args.out is None:
        written = await export(db, args.start, args.end, sys.stdout.buffer)
    else:
        with args.out.open("wb") as file:
            written = await export(db, args.start, args.end, file)
    print(f"exported {written} audit records", file=sys.stderr)
    return 0


def describe(result: VerifyResult) -> str:
    if not result.ok:
        return f"BROKEN at seq {result.broken_seq}: {result.reason} ({result.checked} records before it are intact)"
    if not result.checked:
        return "ok: the audit log is empty"
    return f"ok: {result.checked} records, seq {result.first_seq}-{result.last_seq}, head hash {result.head_hash}"
