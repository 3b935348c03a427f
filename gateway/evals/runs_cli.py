"""`gateway eval runs list|show RUN|compare A B`: stored eval runs, over the admin API.

`compare A B` reads two runs (ids of stored runs, or result files on disk) and prints, per (case, target), the status
in A and in B and what changed; it exits 1 when B regressed against A: a unit that passed in A and does not in B, or
one of A's units missing from B. Runs of different suites are refused (exit 2): their cases are not comparable.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from gateway.admin_client import add_connection_flags, path, request, show

LIST_COLUMNS = ("id", "suite", "status", "targets", "git_commit", "created_at")
CASE_COLUMNS = ("case_id", "target", "status", "pass_rate", "score")
COMPARE_COLUMNS = ("case_id", "target", "a", "b", "change")
EXIT_REGRESSED = 1
EXIT_USAGE = 2


def load_run(args: argparse.Namespace, ref: str) -> dict[str, Any]:
    """A run's canonical result: a result file when `ref` names one on disk, else the stored run of that id."""
    file = Path(ref)
    if ref.endswith(".json") and file.is_file():
        try:
            data = json.loads(file.read_text())
        except (OSError, ValueError) as exc:
            raise SystemExit(f"gateway: cannot read eval result {file}: {exc}") from None
        if not isinstance(data, dict) or data.get("format") != "gateway-eval-result/1":
            raise SystemExit(f"gateway: {file} is not an eval run result (format gateway-eval-result/1)")
        return data
    result: dict[str, Any] = request(args, "GET", path("admin", "evals", "runs", ref))
    return result


def outcome(status: str | None) -> str:
    """A unit's status as compare shows it: pass, fail (failed or error), skipped, or missing."""
    if status is None:
        return "missing"
    return {"passed": "pass", "failed": "fail", "error": "fail"}.get(status, status)


def compare_runs(a: dict[str, Any], b: dict[str, Any]) -> tuple[list[dict[str, str]], int]:
    """Per (case, target) of either run: its outcome in A and in B and the change; and how many regressed."""
    before = {(r["case_id"], r["target"]): r["status"] for r in a.get("results", [])}
    after = {(r["case_id"], r["target"]): r["status"] for r in b.get("results", [])}
    rows, regressed = [], 0
    for case_id, target in sorted(before.keys() | after.keys()):
        old, new = outcome(before.get((case_id, target))), outcome(after.get((case_id, target)))
        change = ""
        if old == "pass" and new != "pass":
            change = "missing (regression)" if new == "missing" else f"pass->{new} (regression)"
        elif old == "missing":
            change = "new"
        elif new == "missing":
            change = "missing (regression)"
        elif new == "pass" and old != "pass":
            change = f"{old}->pass (fixed)"
        regressed += change.endswith("(regression)")
        rows.append({"case_id": case_id, "target": target, "a": old, "b": new, "change": change})
    return rows, regressed


def cmd_list(args: argparse.Namespace) -> int:
    params = {name: getattr(args, name) for name in ("suite", "target", "status", "before", "limit")}
    data = request(args, "GET", "/admin/evals/runs", params={k: v for k, v in params.items() if v is not None})
    if args.json:
        show(args, data, ())
        return 0
    rows = [
        {**run, "suite": run["suite"]["name"], "targets": [f"{t['id']}={t['status']}" for t in run["targets"]]}
        for run in data["data"]
    ]
    show(args, {"data": rows}, LIST_COLUMNS)
    if data["has_more"]:
        print(f"(more: --before {data['last_id']})")
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    result = load_run(args, args.run)
    if args.json:
        show(args, result, ())
        return 0
    counts = result["counts"]
    print(f"run {result['run_id']}: suite {result['suite']['name']} ({result['suite']['path']}), {result['status']}")
    if result.get("incomplete_reason"):
        print(f"incomplete: {result['incomplete_reason']}")
    print(f"pass rate {result['pass_rate']:.2%}: {counts['passed']} passed, {counts['failed']} failed, "
          f"{counts['errors']} errors, {counts['skipped']} skipped of {counts['total']}; "
          f"cost ${result['cost_usd']['target']:.6f} (+ judge ${result['cost_usd']['judge']:.6f})")  # fmt: skip
    show(args, {"data": result["results"]}, CASE_COLUMNS)
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    a, b = load_run(args, args.a), load_run(args, args.b)
    if a["suite"]["name"] != b["suite"]["name"]:
        print(f"gateway: runs of different suites ({a['suite']['name']!r} and {b['suite']['name']!r}) do not compare")
        return EXIT_USAGE
    rows, regressed = compare_runs(a, b)
    if args.json:
        print(json.dumps({"a": a["run_id"], "b": b["run_id"], "rows": rows, "regressions": regressed}, indent=2))
    else:
        if a["suite"]["sha256"] != b["suite"]["sha256"]:
            print(f"note: the suite changed between the runs (sha256 {a['suite']['sha256'][:12]} -> "
                  f"{b['suite']['sha256'][:12]})")  # fmt: skip
        show(args, {"data": rows}, COMPARE_COLUMNS)
        fixed = sum(row["change"].endswith("(fixed)") for row in rows)
        new = sum(row["change"] == "new" for row in rows)
        print(f"{regressed} regressed, {fixed} fixed, {new} new ({a['run_id']} -> {b['run_id']})")
    return EXIT_REGRESSED if regressed else 0


def add_runs_parser(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Adds `runs list|show|compare` to a command group (the lead hooks it under `gateway eval`)."""
    runs = commands.add_parser("runs", help="stored eval runs: list, show one, compare two")
    actions = runs.add_subparsers(dest="runs_action", required=True)
    listing = actions.add_parser("list", help="stored runs, newest first")
    listing.add_argument("--suite", help="a suite's name or path")
    listing.add_argument("--target", help="a target id (prompt:ID@label or a model)")
    listing.add_argument("--status", choices=("passed", "failed", "incomplete"))
    listing.add_argument("--before", help="a run id: list the runs older than it")
    listing.add_argument("--limit", type=int, default=20)
    listing.set_defaults(handler=cmd_list)
    one = actions.add_parser("show", help="one run: its counts, cost and per-case results")
    one.add_argument("run", help="a stored run's id, or a result file (.json)")
    one.set_defaults(handler=cmd_show)
    compare = actions.add_parser(
        "compare", help="per case and target, what changed from run A to run B (exit 1: B regressed)"
    )
    compare.add_argument("a", help="the earlier run: an id, or a result file (.json)")
    compare.add_argument("b", help="the later run: an id, or a result file (.json)")
    compare.set_defaults(handler=cmd_compare)
    for sub in (listing, one, compare):
        add_connection_flags(sub)
