"""`gateway policy check` and `gateway policy test`: validate policies, and dry-run cases through them.

A cases file (YAML) lists inputs or outputs with the decision the author expects:

    cases:
      - name: an email in a prompt is redacted
        stage: input                  # input | output
        text: "write to jane.doe@example.org"
        model: gpt-4o-mini            # optional: for applies_to.models (default "any-model")
        team: research                # optional: team id or name, for applies_to.teams
        key: key_123                  # optional: key id or prefix, for applies_to.keys
        expect: redact                # allow | warn | redact | block: the most restrictive enforced action
        expect_rules: [pii-input]     # optional: the rules that must have decided
        expect_text: "write to [REDACTED:email]"   # optional: the text after redaction
      - name: a big refund needs a human
        stage: tool                   # a tool call the model asks for, judged by the tool rules
        tool: payments.refund
        arguments: {order_id: "42", amount: 500}   # an object, or the raw JSON string the model would send
        role: member                  # optional: the caller's key role (default member)
        expect: require_approval      # allow | deny | require_approval
        expect_rules: [big-refunds]
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import orjson
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from gateway.calls.caller import KeyEntry, Principal
from gateway.calls.context import CallContext
from gateway.config import format_validation_error
from gateway.errors import PolicyDenied
from gateway.policy.guardrails import GuardrailEngine, input_slots, output_slots
from gateway.policy.loader import PolicyError, PolicySet
from gateway.policy.spec import ACTION_RANK
from gateway.policy.store import PolicyStore
from gateway.toolcalls.engine import ToolCall
from gateway.toolcalls.governor import ToolGovernor


class Case(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    stage: Literal["input", "output", "tool"] = "input"
    text: str = ""
    tool: str | None = None
    arguments: dict[str, object] | str | None = None
    role: Literal["admin", "member", "approver", "viewer"] = "member"
    model: str = "any-model"
    route: Literal["chat", "completions", "embeddings"] = "chat"
    team: str | None = None
    key: str | None = None
    response_format: dict[str, object] | None = None
    expect: Literal["allow", "warn", "redact", "block", "deny", "require_approval"]
    expect_rules: list[str] | None = None
    expect_text: str | None = None

    @model_validator(mode="after")
    def _stage_fields(self) -> Case:
        if self.stage == "tool" and (self.tool is None or self.arguments is None):
            raise ValueError("a tool case needs tool and arguments")
        if self.stage != "tool" and (self.tool is not None or self.arguments is not None):
            raise ValueError("tool and arguments belong to stage: tool cases")
        return self


class CaseFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    cases: list[Case] = Field(min_length=1)


@dataclass(slots=True)
class Outcome:
    case: Case
    action: str
    rules: list[str]
    text: str
    shadow: list[str]

    @property
    def passed(self) -> bool:
        c = self.case
        return (
            self.action == c.expect
            and (c.expect_rules is None or sorted(c.expect_rules) == sorted(self.rules))
            and (c.expect_text is None or c.expect_text == self.text)
        )


def load_cases(path: Path) -> list[Case]:
    try:
        data = yaml.safe_load(path.read_text())
        return CaseFile.model_validate(data).cases
    except OSError as exc:
        raise PolicyError(f"{path}: cannot read ({exc.strerror})") from None
    except yaml.YAMLError as exc:
        raise PolicyError(f"{path}: invalid YAML ({exc})") from None
    except ValidationError as exc:
        raise PolicyError(format_validation_error(str(path), exc)) from None


def case_context(case: Case) -> CallContext:
    ctx = CallContext(request_id="policy-test", operation=case.route, raw=b"", authorization=None)
    ctx.model = case.model
    if case.key or case.team or case.stage == "tool":
        entry = KeyEntry(
            id=case.key or "case-key",
            name="case",
            prefix=case.key or "",
            role=case.role,
            team_id=case.team,
            team_name=case.team,
            allowed_models=None,
            budgets=(),
            rates=(),
            expires_at=None,
            revoked=False,
        )
        ctx.principal = Principal(key_id=entry.id, name="case", role=case.role, team_id=case.team, key=entry)
    if case.stage == "input":
        if case.route == "chat":
            ctx.body = {"model": case.model, "messages": [{"role": "user", "content": case.text}]}
        else:
            ctx.body = {"model": case.model, "prompt" if case.route == "completions" else "input": case.text}
    else:
        ctx.body = {"model": case.model, "messages": [{"role": "user", "content": "(output case)"}]}
    if case.response_format is not None:
        ctx.body["response_format"] = case.response_format
    return ctx


def run_tool_case(store: PolicyStore, case: Case) -> Outcome:
    ctx = case_context(case)
    arguments = case.arguments if isinstance(case.arguments, str) else orjson.dumps(case.arguments).decode()
    governor = ToolGovernor(store)
    decision = governor.decide(ctx, ToolCall(name=case.tool or "", arguments=arguments, id="case"), kill_switch=False)
    decisions = ctx.decisions or []
    return Outcome(
        case=case,
        action=decision.action if decision else "allow",
        rules=[decision.rule_id] if decision else [],
        text=arguments,
        shadow=[f"{d['action']}:{d['rule']}" for d in decisions if d.get("shadow")],
    )


async def run_case(engine: GuardrailEngine, case: Case) -> Outcome:
    if case.stage == "tool":
        return run_tool_case(engine.store, case)
    ctx = case_context(case)
    if case.stage == "input":
        slots = input_slots(ctx)
    else:
        reply = {"choices": [{"index": 0, "message": {"role": "assistant", "content": case.text}}]}
        slots = output_slots(reply)
    try:
        await engine.run(ctx, case.stage, slots)
    except PolicyDenied:
        pass
    container, key = slots[0]
    enforced = [d for d in ctx.decisions or () if not d.get("shadow")]
    action = max((str(d["action"]) for d in enforced), key=ACTION_RANK.__getitem__, default="allow")
    return Outcome(
        case=case,
        action=action,
        rules=[str(d["rule"]) for d in enforced],
        text=str(container[key]),  # type: ignore[index]
        shadow=[f"{d['action']}:{d['rule']}" for d in ctx.decisions or () if d.get("shadow")],
    )


def summary(policies: PolicySet) -> list[str]:
    lines = [f"{len(policies.policies)} policies, sha256 {policies.sha256}"]
    for policy in policies.policies:
        scope = []
        for name, value in (("keys", policy.keys), ("teams", policy.teams), ("routes", policy.routes)):
            if value is not None:
                scope.append(f"{name}={','.join(sorted(value))}")
        if policy.models is not None:
            scope.append(f"models~{policy.models.pattern[:40]}")
        lines.append(f"  {policy.name} [{policy.mode}] ({policy.source}) applies to {' '.join(scope) or 'everything'}")
        for g in policy.guardrails:
            lines.append(f"    {g.id:<24} {g.stage:<6} {g.check_name:<12} -> {g.action}")
        if policy.tools is not None:
            for rule in policy.tools.rules:
                lines.append(f"    {rule.id:<24} tool   {'':<12} -> {rule.action} (risk {rule.risk})")
            lines.append(f"    {'(no rule matches)':<24} tool   {'':<12} -> {policy.tools.default}")
    return lines


def run_cases(store: PolicyStore, cases: list[Case]) -> list[Outcome]:
    engine = GuardrailEngine(store)

    async def all_cases() -> list[Outcome]:
        return [await run_case(engine, case) for case in cases]

    return asyncio.run(all_cases())


def cmd_policy(args: object) -> int:
    import sys

    from gateway.checks.context import build_check
    from gateway.identity.keys import load_key_names
    from gateway.settings import Settings
    from gateway.storage.db import MigrationError

    path = Path(args.path)  # type: ignore[attr-defined]
    config_path = getattr(args, "config", None)
    try:
        key_names = load_key_names(Settings(config=config_path).resolve().database_url) if config_path else None
    except MigrationError as exc:
        print(f"gateway: {exc}", file=sys.stderr)
        return 2
    try:
        store = PolicyStore(str(path), build_check, key_names=(lambda: key_names) if key_names is not None else None)
    except PolicyError as exc:
        print(f"gateway: invalid policies\n{exc}", file=sys.stderr)
        return 2
    if args.action == "check":  # type: ignore[attr-defined]
        print("\n".join(summary(store.current)))
        for warning in store.warnings():
            print(f"warning: {warning}")
        if key_names is None and any(policy.keys is not None for policy in store.current.policies):
            print("note: applies_to.keys entries were not checked against the keys (give --config to read them)")
        return 0
    try:
        cases = load_cases(Path(args.cases))  # type: ignore[attr-defined]
    except PolicyError as exc:
        print(f"gateway: invalid cases\n{exc}", file=sys.stderr)
        return 2
    outcomes = run_cases(store, cases)
    for o in outcomes:
        mark = "ok  " if o.passed else "FAIL"
        rules = ",".join(o.rules) or "-"
        shadow = f"  shadow: {','.join(o.shadow)}" if o.shadow else ""
        print(f"{mark} {o.case.name}: {o.action} (rules {rules}){shadow}")
        if not o.passed:
            print(f"     expected {o.case.expect}" + (f" by {o.case.expect_rules}" if o.case.expect_rules else ""))
            if o.case.expect_text is not None and o.case.expect_text != o.text:
                print(f"     expected text {o.case.expect_text!r}\n     got text      {o.text!r}")
    failed = sum(not o.passed for o in outcomes)
    print(f"{len(outcomes) - failed} passed, {failed} failed")
    return 1 if failed else 0


def add_policy_commands(commands) -> None:  # type: ignore[no-untyped-def]
    policy = commands.add_parser("policy", help="validate policies and dry-run cases through them")
    actions = policy.add_subparsers(dest="action", required=True)
    check = actions.add_parser("check", help="validate a policy file or folder and summarise what applies to what")
    check.add_argument("path")
    check.add_argument(
        "--config", type=Path, help="also warn about applies_to.keys entries that match no key of its database"
    )
    test = actions.add_parser("test", help="dry-run a cases file through the policies; non-zero exit on a mismatch")
    test.add_argument("path")
    test.add_argument("cases")
    policy.set_defaults(handler=cmd_policy)
