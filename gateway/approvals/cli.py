"""`gateway approvals list|show|approve|deny|cancel|wait` and `gateway tools suspend|resume|suspensions`, over HTTP.

Approvers decide with their own key (`--key sk-...`): the master key may decide only where the policy names
the admin role as an approver, and no key may decide a call it requested itself.
"""

from __future__ import annotations

import argparse
import sys

from gateway.admin_client import add_connection_flags, path, request, show

APPROVAL_COLUMNS = ("id", "status", "tool", "arguments", "requested_by", "risk", "rule_id", "expires_at", "decided_by")
# requested_by and decided_by are shown as key names; --json has the ids too
SUSPENSION_COLUMNS = ("scope", "reason", "suspended_by", "created_at")
EXIT_STILL_PENDING = 75  # `approvals wait` timed out with the approval still pending (sysexits' EX_TEMPFAIL: retry)


def flat(approval: dict[str, object]) -> dict[str, object]:
    """One approval as a table row."""
    call = approval["tool_call"]["function"]  # type: ignore[index]
    return {
        **approval,
        "tool": call["name"],
        "arguments": call["arguments"],
        "requested_by": approval["requested_by"]["key_name"],  # type: ignore[index]
        "rule_id": approval["policy"]["rule_id"],  # type: ignore[index]
        "decided_by": approval["decided_by_name"],
    }


def cmd_approvals(args: argparse.Namespace) -> int:
    if args.action == "list":
        params: dict[str, object] = {"limit": args.limit}
        if args.status != "all":
            params["status"] = args.status
        data = request(args, "GET", "/v1/approvals", params=params)
        rows: object = {"data": [flat(a) for a in data["data"]]}
    elif args.action == "show":
        rows = flat(request(args, "GET", path("v1", "approvals", args.id)))
    elif args.action == "wait":
        # The gateway holds the request up to --timeout: wait that long for its answer, and a little more.
        wait = path("v1", "approvals", args.id, "wait")
        approval = request(args, "GET", wait, params={"timeout": args.timeout}, timeout_s=args.timeout + 10)
        show(args, flat(approval), APPROVAL_COLUMNS)
        if approval["status"] == "pending":
            print(f"gateway: {args.id} is still pending after {args.timeout:g} s; wait again", file=sys.stderr)
            return EXIT_STILL_PENDING
        return 0
    else:
        body = {"comment": args.comment} if args.comment else None
        rows = flat(request(args, "POST", path("v1", "approvals", args.id, args.action), json=body))
    show(args, rows, APPROVAL_COLUMNS)
    return 0


def cmd_tools(args: argparse.Namespace) -> int:
    if args.action == "suspend":
        body = {"all": True} if args.all else {"key_id": args.key_id}
        data = request(args, "POST", "/admin/tool_suspensions", json={**body, "reason": args.reason})
    elif args.action == "resume":
        scope = "all" if args.all else f"key:{args.key_id}"
        request(args, "DELETE", path("admin", "tool_suspensions", scope))
        print(f"tool calls resumed ({scope})")
        return 0
    else:
        data = request(args, "GET", "/admin/tool_suspensions")
    show(args, data, SUSPENSION_COLUMNS)
    return 0


def add_approval_commands(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    approvals = commands.add_parser("approvals", help="list, approve and deny tool calls held for a human")
    actions = approvals.add_subparsers(dest="action", required=True)
    listing = actions.add_parser("list", help="approvals you may see, newest first")
    listing.add_argument(
        "--status",
        default="pending",
        choices=["pending", "approved", "denied", "expired", "cancelled", "executed", "all"],
    )
    listing.add_argument("--limit", type=int, default=100)
    actions.add_parser("show", help="one approval").add_argument("id")
    wait = actions.add_parser(
        "wait", help=f"block until an approval is decided (at most 55 s); exit {EXIT_STILL_PENDING} if still pending"
    )
    wait.add_argument("id")
    wait.add_argument("--timeout", type=float, default=30)
    for name, needs in (("approve", False), ("deny", True), ("cancel", False)):
        action = actions.add_parser(name, help=f"{name} a pending approval")
        action.add_argument("id")
        action.add_argument("--comment", required=needs, help="why (recorded in the audit log)")
    for sub in actions.choices.values():
        add_connection_flags(sub)
    approvals.set_defaults(handler=cmd_approvals)

    tools = commands.add_parser("tools", help="the kill switch: suspend the tool calls of a key or of everyone")
    tool_actions = tools.add_subparsers(dest="action", required=True)
    for name in ("suspend", "resume"):
        action = tool_actions.add_parser(name, help=f"{name} tool calls")
        target = action.add_mutually_exclusive_group(required=True)
        target.add_argument("--key-id", help="one key (its id)")
        target.add_argument("--all", action="store_true", help="every key")
        if name == "suspend":
            action.add_argument("--reason", help="recorded and shown to the agents")
    tool_actions.add_parser("suspensions", help="list the suspensions in force")
    for sub in tool_actions.choices.values():
        add_connection_flags(sub)
    tools.set_defaults(handler=cmd_tools)
