"""`gateway prompts list|show (versions)|get|create|label|diff|sync|export`: the prompt registry's CLI, over HTTP.

`sync DIR` loads every *.yaml prompt file in DIR as a new version when its content changed (idempotent:
an unchanged file creates nothing); `export DIR` writes each prompt's latest (or labelled) version as a
file that sync reads back unchanged. Keep the folder in git and sync from CI.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from gateway.admin_client import add_connection_flags, path, request, show

if TYPE_CHECKING:  # pydantic and yaml load only in the commands that read or write prompt files
    from gateway.prompts.spec import PromptSpec

SCHEMA_LINE = "# yaml-language-server: $schema=schema.json\n"
VERSION_COLUMNS = ("prompt_id", "version", "variables", "commit_message", "created_by", "created_at")


def load_file(file: Path) -> PromptSpec:
    import yaml
    from pydantic import ValidationError

    from gateway.config import format_validation_error
    from gateway.prompts.spec import PromptSpec

    try:
        return PromptSpec.model_validate(yaml.safe_load(file.read_text()))
    except ValidationError as exc:
        raise SystemExit(f"gateway: invalid prompt file\n{format_validation_error(str(file), exc)}") from None
    except (OSError, yaml.YAMLError) as exc:
        raise SystemExit(f"gateway: cannot read {file}: {exc}") from None


def dump_file(data: dict[str, object]) -> str:
    from gateway.prompts.spec import PromptSpec, prompt_file

    return prompt_file(PromptSpec.model_validate(data["spec"]))


def cmd_prompts(args: argparse.Namespace) -> int:
    action = args.action
    if action == "list":
        data = request(args, "GET", "/admin/prompts")
        rows = [{"id": p["id"], "latest": p["latest"], "labels": [f"{k}={v}" for k, v in sorted(p["labels"].items())]}
                for p in data["data"]]  # fmt: skip
        show(args, {"data": rows}, ("id", "latest", "labels"))
    elif action in ("show", "versions"):
        data = request(args, "GET", path("admin", "prompts", args.id))
        if not args.json:
            print("labels: " + ", ".join(f"{k}={v}" for k, v in sorted(data["labels"].items())))
        show(args, {"data": data["versions"]} if not args.json else data, VERSION_COLUMNS)
    elif action == "get":
        where = ("versions", args.version) if args.version else ("labels", args.label)
        data = request(args, "GET", path("admin", "prompts", args.id, *where))
        if args.json:
            show(args, data, ())
        else:
            print(dump_file(data), end="")
    elif action == "create":
        spec = load_file(args.file)
        show(args, request(args, "POST", "/admin/prompts", json=spec.model_dump(mode="json")), VERSION_COLUMNS)
    elif action == "label":
        if args.force and not (args.reason or "").strip():
            raise SystemExit("gateway: --force needs --reason (a forced move is audited with it)")
        label = path("admin", "prompts", args.id, "labels", args.label)
        move: dict[str, object] = {"version": args.version}
        if args.force:
            move |= {"force": True, "reason": args.reason}
        data = request(args, "PUT", label, json=move)
        show(args, data, ("prompt_id", "label", "version", "previous_version", "updated_by"))
    elif action == "diff":
        versions = {"from": args.old, "to": args.new}
        data = request(args, "GET", path("admin", "prompts", args.id, "diff"), params=versions)
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
    specs = [(file, load_file(file)) for file in files]  # all valid before anything is written
    for file, spec in specs:
        data = request(args, "POST", "/admin/prompts", params={"if_changed": "true"}, json=spec.model_dump(mode="json"))
        state = "new version" if data["created"] else "unchanged"
        line = f"{file.name}: {spec.id} {state} {data['version']}"
        if args.label:
            label = path("admin", "prompts", spec.id, "labels", args.label)
            request(args, "PUT", label, json={"version": data["version"]})
            line += f", {args.label} -> {data['version']}"
        print(line)
    return 0


def export(args: argparse.Namespace) -> int:
    """Writes each prompt as DIR/ID.yaml, with the schema line on top. A file already there is left alone when it
    holds the same content (its comments and formatting stay) and, unless --force, when it differs (a local edit
    would be lost): that is reported, and the exit code is 1."""
    args.dir.mkdir(parents=True, exist_ok=True)
    kept = 0
    for prompt in request(args, "GET", "/admin/prompts")["data"]:
        label = args.label or "latest"
        if label not in prompt["labels"]:
            print(f"{prompt['id']}: no label {label!r}, skipped", file=sys.stderr)
            continue
        data = request(args, "GET", path("admin", "prompts", prompt["id"], "labels", label))
        file = args.dir / f"{prompt['id']}.yaml"
        if file.exists() and not args.force:
            if same_content(file, data):
                print(f"{file}: {prompt['id']} version {data['version']}, unchanged")
                continue
            print(f"{file}: differs from {prompt['id']} version {data['version']}; not overwritten "
                  "(local edits would be lost; --force overwrites)", file=sys.stderr)  # fmt: skip
            kept += 1
            continue
        file.write_text(SCHEMA_LINE + dump_file(data))
        print(f"{file}: {prompt['id']} version {data['version']}")
    return 1 if kept else 0


def same_content(file: Path, data: dict[str, object]) -> bool:
    """Whether a prompt file already there holds the content of `data` (comments and formatting aside)."""
    import yaml
    from pydantic import ValidationError

    from gateway.prompts.spec import PromptSpec

    try:
        local = PromptSpec.model_validate(yaml.safe_load(file.read_text()))
    except (OSError, ValueError, ValidationError, yaml.YAMLError):
        return False
    return local.content_sha256() == PromptSpec.model_validate(data["spec"]).content_sha256()


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
    label.add_argument("--force", action="store_true", help="move a gated label without a passing eval run (admin)")
    label.add_argument("--reason", help="why the move is forced (required with --force; audited)")
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
    export.add_argument("--force", action="store_true", help="overwrite files that differ (local edits are lost)")
    for sub in dict.fromkeys(actions.choices.values()):  # an alias maps to the same parser
        add_connection_flags(sub)
    prompts.set_defaults(handler=cmd_prompts)
