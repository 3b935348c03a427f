"""`gateway keys` and `gateway teams`: the CLI twins of /admin/keys and /admin/teams."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from gateway.admin_client import add_connection_flags, path, request, show

LIMIT_FLAGS = ("budget", "period", "rpm", "tpm", "models")


def add_limit_flags(parser: argparse.ArgumentParser, *, create: bool) -> None:
    parser.add_argument("--budget", type=float, help="budget in USD per period")
    parser.add_argument("--period", choices=["daily", "weekly", "monthly", "total"])
    parser.add_argument("--rpm", type=int, help="requests per minute")
    parser.add_argument("--tpm", type=int, help="tokens per minute")
    parser.add_argument("--models", help="comma-separated allowed models (default: all)")
    if not create:
        parser.add_argument("--clear", action="append", default=[], choices=LIMIT_FLAGS, help="remove a limit")


def limits_of(args: argparse.Namespace) -> dict[str, Any]:
    body: dict[str, Any] = {}
    for name in LIMIT_FLAGS:
        value = getattr(args, name, None)
        if value is not None:
            body[name] = [m.strip() for m in value.split(",") if m.strip()] if name == "models" else value
    for name in getattr(args, "clear", []):
        body[name] = None
    return body


KEY_COLUMNS = ("id", "prefix", "name", "team_id", "role", "budget", "period", "rpm", "tpm", "models", "revoked_at")
TEAM_COLUMNS = ("id", "name", "budget", "period", "rpm", "tpm", "models")


def cmd_keys(args: argparse.Namespace) -> int:
    action = args.action
    if action == "create":
        body = {"name": args.name, "role": args.role, **limits_of(args)}
        if args.team:
            body["team"] = args.team
        if args.expires:
            body["expires_at"] = args.expires
        data = request(args, "POST", "/admin/keys", json=body)
        show(args, data, KEY_COLUMNS)
        warn(data)
        if not args.json:
            print(
                f"\nkey: {data['key']}\nStore it now: it is shown once and cannot be retrieved again.", file=sys.stderr
            )
    elif action == "list":
        params = {"include_revoked": "true" if args.all else "false", **({"team": args.team} if args.team else {})}
        show(args, request(args, "GET", "/admin/keys", params=params), KEY_COLUMNS)
    elif action == "show":
        show(args, request(args, "GET", path("admin", "keys", args.ref)), KEY_COLUMNS)
    elif action == "update":
        body = limits_of(args)
        for name in ("name", "role", "team"):
            if getattr(args, name, None) is not None:
                body[name] = getattr(args, name)
        if args.expires is not None:
            body["expires_at"] = args.expires or None
        data = request(args, "PATCH", path("admin", "keys", args.ref), json=body)
        show(args, data, KEY_COLUMNS)
        warn(data)
    elif action == "rotate":
        data = request(args, "POST", path("admin", "keys", args.ref, "rotate"))
        show(args, data, KEY_COLUMNS)
        if not args.json:
            print(f"\nnew key: {data['key']}\nThe old secret no longer works.", file=sys.stderr)
    elif action == "revoke":
        show(args, request(args, "POST", path("admin", "keys", args.ref, "revoke")), KEY_COLUMNS)
    return 0


def cmd_teams(args: argparse.Namespace) -> int:
    if args.action == "create":
        data = request(args, "POST", "/admin/teams", json={"name": args.name, **limits_of(args)})
    elif args.action == "list":
        data = request(args, "GET", "/admin/teams")
    elif args.action == "show":
        data = request(args, "GET", path("admin", "teams", args.ref))
    else:
        data = request(args, "PATCH", path("admin", "teams", args.ref), json=limits_of(args))
    show(args, data, TEAM_COLUMNS)
    warn(data)
    return 0


def warn(data: dict[str, Any]) -> None:
    """What the gateway accepted but flagged (an allowed model it does not serve), on stderr."""
    for warning in data.get("warnings") or ():
        print(f"gateway: warning: {warning}", file=sys.stderr)


def add_identity_commands(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    keys = commands.add_parser("keys", help="manage virtual keys")
    key_actions = keys.add_subparsers(dest="action", required=True)
    create = key_actions.add_parser("create", help="create a key; prints its secret once")
    create.add_argument("--name", default="key")
    create.add_argument("--team", help="team id or name")
    create.add_argument("--role", default="member", choices=["admin", "member", "approver", "viewer"])
    create.add_argument("--expires", help="expiry, ISO 8601 with timezone, e.g. 2026-12-31T00:00:00Z")
    add_limit_flags(create, create=True)
    listing = key_actions.add_parser("list", help="list keys")
    listing.add_argument("--team")
    listing.add_argument("--all", action="store_true", help="include revoked keys")
    for action in ("show", "rotate", "revoke"):
        key_actions.add_parser(action, help=f"{action} a key (by id or prefix)").add_argument("ref")
    update = key_actions.add_parser("update", help="change a key's limits, team, role or expiry")
    update.add_argument("ref")
    update.add_argument("--name")
    update.add_argument("--team")
    update.add_argument("--role", choices=["admin", "member", "approver", "viewer"])
    update.add_argument("--expires", help="new expiry; '' removes it")
    add_limit_flags(update, create=False)
    for sub in key_actions.choices.values():
        add_connection_flags(sub)
    keys.set_defaults(handler=cmd_keys)

    teams = commands.add_parser("teams", help="manage teams")
    team_actions = teams.add_subparsers(dest="action", required=True)
    team_create = team_actions.add_parser("create", help="create a team")
    team_create.add_argument("--name", required=True)
    add_limit_flags(team_create, create=True)
    team_actions.add_parser("list", help="list teams")
    team_actions.add_parser("show", help="show a team").add_argument("ref")
    team_update = team_actions.add_parser("update", help="change a team's limits")
    team_update.add_argument("ref")
    add_limit_flags(team_update, create=False)
    for sub in team_actions.choices.values():
        add_connection_flags(sub)
    teams.set_defaults(handler=cmd_teams)
