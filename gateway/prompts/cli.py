"""`gateway prompts list|show (versions)|get|create|label|diff|sync|export`: the prompt registry's CLI, over HTTP.

`sync DIR` loads every *.yaml prompt file in DIR as a new version when its content changed (idempotent:
an unchanged file creates nothing); `export DIR` writes each prompt's latest (or labelled) version as a
file that sync reads back unchanged. Keep the folder in git and sync from CI.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml
from pydantic import ValidationError

from gateway.admin_client import add_connection_flags, request, show
from gateway.config import format_validation_error
from gateway.prompts.spec import PromptSpec, prompt_file

VERSION_COLUMNS = ("prompt_id", "version", "variables", "commit_message", "created_by", "created_at")


def load_file(path: Path) -> PromptSpec:
    try:
        return PromptSpec.model_validate(yaml.safe_load(path.read_text()))
    except ValidationError as exc:
        raise SystemExit(f"gateway: invalid prompt file\n{format_validation_error(str(path), exc)}") from None
    except (OSError, yaml.YAMLError) as exc:
        raise SystemExit(f"gateway: cannot read {path}: {exc}") from None


def dump_file(data: dict[str, object]) -> str:
    return prompt_file(PromptSpec.model_validate(data["spec"]))


def cmd_prompts(args: argparse.Namespace) -> int:
    action = args.action
    if action == "list":
        data = request(args, "GET", "/admin/prompts")
        rows = [{"id": p["id"], "latest": p["latest"], "labels": [f"{k}={v}" for k, v in sorted(p["labels"].items())]}
                for p in data["data"]]  # fmt: skip
        show(args, {"data": rows}, ("id", "latest", "labels"))
    elif action in ("show", "versions"):
        data = request(args, "GET", f"/admin/prompts/{args.id}")
        if not args.json:
            print("labels: " + ", ".join(f"{k}={v}" for k, v in sorted(data["labels"].items())))
        show(args, {"data": data["versions"]} if not args.json else data, VERSION_COLUMNS)
    elif action == "get":
        where = f"versions/{args.version}" if args.version else f"labels/{args.label}"
        data = request(args, "GET", f"/admin/prompts/{args.id}/{where}")
        if args.json:
            show(args, data, ())
        else:
            print(dump_file(data), end="")
    elif action == "create":
        spec = load_file(args.file)
        show(args, request(args, "POST", "/admin/prompts", json=spec.model_dump(mode="json")), VERSION_COLUMNS)
    elif action == "label":
        data = request(args, "PUT", f"/admin/prompts/{args.id}/labels/{args.label}", json={"version": args.version})
        show(args, data, ("prompt_id", "label", "version", "previous_version", "updated_by"))
    elif action == "diff":
        data = request(args, "GET", f"/admin/prompts/{args.id}/diff", params={"from": args.old, "to": args.new})
        print(data["diff"] or "(no difference)", end="" if data["diff"] else "\n")
    elif action == "sync":
        return sync(args)
    elif action == "export":
        return export(args)
    return 0


def sync(args: argparse.Namespace) -> int:
    files = sorted(args.dir.glob("*.yaml")) + sorted(args.dir.glob("*.yml"))
    if not files:
        raise SystemExit(f"gateway: no prompt files (*.yaml) in {args.dir}")
    specs = [(path, load_file(path)) for path in files]  # all valid before anything is written
    for path, spec in specs:
        data = request(args, "POST", "/admin/prompts", params={"if_changed": "true"}, json=spec.model_dump(mode="json"))
        state = "new version" if data["created"] else "unchanged"
        line = f"{path.name}: {spec.id} {state} {data['version']}"
        if args.label:
            request(args, "PUT", f"/admin/prompts/{spec.id}/labels/{args.label}", json={"version": data["version"]})
            line += f", {args.label} -> {data['version']}"
        print(line)
    return 0


def export(args: argparse.Namespace) -> int:
    args.dir.mkdir(parents=True, exist_ok=True)
    for prompt in request(args, "GET", "/admin/prompts")["data"]:
        label = args.label or "latest"
        if label not in prompt["labels"]:
            print(f"{prompt['id']}: no label {label!r}, skipped", file=sys.stderr)
            continue
        data = request(args, "GET", f"/admin/prompts/{prompt['id']}/labels/{label}")
        path = args.dir / f"{prompt['id']}.yaml"
        path.write_text(dump_file(data))
        print(f"{path}: {prompt['id']} version {data['version']}")
    return 0


def add_prompt_commands(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    prompts = commands.add_parser("prompts", help="the prompt registry: versions, labels, sync from a folder")
    actions = prompts.add_subparsers(dest="action", required=True)
    actions.add_parser("list", help="prompts with their latest version and labels")
    actions.add_parser("show", aliases=["versions"], help="a prompt's versions and labels").add_argument("id")
    get = actions.add_parser("get", help="one version as a prompt file")
    get.add_argument("id")
    pin = get.add_mutually_exclusive_group()
    pin.add_argument("--version", type=int)
    pin.add_argument("--label", default="latest")
    actions.add_parser("create", help="a new version from a prompt file").add_argument("file", type=Path)
    label = actions.add_parser("label", help="point a label at a version (rollback: point it back)")
    label.add_argument("id")
    label.add_argument("label")
    label.add_argument("version", type=int)
    diff = actions.add_parser("diff", help="what changed between two versions")
    diff.add_argument("id")
    diff.add_argument("old", type=int)
    diff.add_argument("new", type=int)
    sync = actions.add_parser("sync", help="load a folder of prompt files; only changed ones become versions")
    sync.add_argument("dir", type=Path)
    sync.add_argument("--label", help="also point this label at each synced version (e.g. staging)")
    export = actions.add_parser("export", help="write each prompt's latest (or --label) version as a file")
    export.add_argument("dir", type=Path, nargs="?", default=Path("prompts"))
    export.add_argument("--label")
    for sub in dict.fromkeys(actions.choices.values()):  # an alias maps to the same parser
        add_connection_flags(sub)
    prompts.set_defaults(handler=cmd_prompts)
