"""`gateway usage`: the CLI twin of /admin/usage (tokens and cost by key, team, model, day or prompt)."""

from __future__ import annotations

import argparse
import sys

from gateway.admin_client import add_connection_flags, request


def cmd_usage(args: argparse.Namespace) -> int:
    from gateway.usage.rows import UsageRow, render_csv, render_json, render_table

    params = {"group_by": args.group_by}
    for param, value in (("from", args.start), ("to", args.end), ("key", args.for_key), ("team", args.for_team)):
        if value:
            params[param] = value
    data = request(args, "GET", "/admin/usage", params=params)
    rows = [UsageRow.model_validate(row) for row in data["data"]]
    render = {"table": render_table, "csv": render_csv, "json": render_json}["json" if args.json else args.format]
    sys.stdout.write(render(rows))
    return 0


def add_usage_commands(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    usage = commands.add_parser("usage", help="tokens and cost by key, team, model or day")
    usage.add_argument("--group-by", default="key", choices=["key", "team", "model", "day", "prompt"])
    usage.add_argument("--from", dest="start", help="start (ISO date or time, UTC)")
    usage.add_argument("--to", dest="end", help="end, exclusive")
    usage.add_argument("--for-key", help="only this key (id or prefix)")
    usage.add_argument("--for-team", help="only this team (id or name)")
    usage.add_argument("--format", default="table", choices=["table", "csv", "json"])
    add_connection_flags(usage)
    usage.set_defaults(handler=cmd_usage)
