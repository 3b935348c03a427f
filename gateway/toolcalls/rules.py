"""The `tools:` section of a policy file (pydantic, extra="forbid", frozen) and its compiled form.

What a rule means at run time (how conditions, filters and precedence combine) lives in
governance/engine.py; this module only checks what was written and compiles globs, regexes and durations
once, so a bad file stops at load with the field path (`tools.rules[1].when[0].regex: invalid regex ...`).
"""

from __future__ import annotations

import fnmatch
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    JsonValue,
    StrictBool,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from gateway.calls.caller import Role

ToolAction = Literal["allow", "deny", "require_approval"]
Risk = Literal["low", "medium", "high", "critical"]
OnDeny = Literal["explain", "error"]
OnTimeout = Literal["deny", "allow"]
Operator = Literal["eq", "ne", "gt", "gte", "lt", "lte", "in", "nin", "regex", "contains", "exists"]
# Most restrictive wins: a higher rank overrides a lower one.
TOOL_ACTION_RANK: dict[str, int] = {"allow": 0, "require_approval": 1, "deny": 2}
OPERATORS: tuple[Operator, ...] = ("eq", "ne", "gt", "gte", "lt", "lte", "in", "nin", "regex", "contains", "exists")
# Rule ids the engine uses for its own decisions; a policy may not reuse them.
DEFAULT_RULE_ID = "default"
INVALID_ARGUMENTS_RULE_ID = "invalid-arguments"
RESERVED_RULE_IDS = frozenset({DEFAULT_RULE_ID, INVALID_ARGUMENTS_RULE_ID})

_DURATION = re.compile(r"(\d{1,7})([smhd])")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}
MAX_DURATION_S = 30 * 86400  # an approval left pending for longer than a month is a forgotten one


def parse_duration(text: str) -> int:
    """'30s', '15m', '2h', '1d' -> seconds; raises ValueError ("invalid duration ...") otherwise."""
    found = _DURATION.fullmatch(text.strip()) if isinstance(text, str) else None
    if found is None:
        raise ValueError(f"invalid duration {text!r}: expected a whole number and a unit, e.g. 30s, 15m, 2h, 1d")
    seconds = int(found[1]) * _UNIT_S[found[2]]
    if not 1 <= seconds <= MAX_DURATION_S:
        raise ValueError(f"invalid duration {text!r}: must be between 1s and 30d")
    return seconds


def _check_duration(text: str) -> str:
    parse_duration(text)
    return text


def _one_or_many(value: object) -> object:
    return [value] if isinstance(value, str) else value


Duration = Annotated[str, AfterValidator(_check_duration)]
Globs = Annotated[
    tuple[Annotated[str, Field(min_length=1)], ...],
    BeforeValidator(_one_or_many),
    Field(min_length=1),
    WithJsonSchema(
        {"anyOf": [{"type": "string", "minLength": 1}, {"type": "array", "items": {"type": "string"}, "minItems": 1}]}
    ),
]
_NUMBER_SCHEMA = WithJsonSchema({"type": "number"})


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Condition(_Strict):
    """One test on one argument: `arg` is a key path ("amount", "customer.tier", "items.0.sku") and exactly
    one operator says what must hold. See governance/engine.py for missing keys and type mismatches."""

    arg: str = Field(pattern=r"^[^.]+(\.[^.]+)*$", description='key path into the JSON arguments, e.g. "items.0.sku"')
    eq: JsonValue = Field(default=None, description="equal to this JSON value (1 == 1.0; true != 1)")
    ne: JsonValue = Field(default=None, description="present and not equal to this JSON value")
    gt: Annotated[int | float | None, _NUMBER_SCHEMA] = Field(default=None, description="a number greater than")
    gte: Annotated[int | float | None, _NUMBER_SCHEMA] = Field(default=None, description="a number at least")
    lt: Annotated[int | float | None, _NUMBER_SCHEMA] = Field(default=None, description="a number less than")
    lte: Annotated[int | float | None, _NUMBER_SCHEMA] = Field(default=None, description="a number at most")
    in_: tuple[JsonValue, ...] | None = Field(default=None, alias="in", description="equal to one of these values")
    nin: tuple[JsonValue, ...] | None = Field(default=None, description="present and equal to none of these values")
    regex: str | None = Field(default=None, description="a string in which this Python regex is found (re.search)")
    contains: JsonValue = Field(default=None, description="a string containing this substring, or a list this element")
    exists: StrictBool | None = Field(default=None, description="true: key present (even as null); false: absent")

    @field_validator("gt", "gte", "lt", "lte", mode="before")
    @classmethod
    def _number(cls, value: object) -> object:
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise ValueError(f"expected a number, got {value!r}")
        return value

    @field_validator("in_", "nin", mode="before")
    @classmethod
    def _list(cls, value: object) -> object:
        if not isinstance(value, list | tuple):
            raise ValueError(f"expected a list of values, got {value!r}")
        return value

    @field_validator("regex")
    @classmethod
    def _regex(cls, value: str | None) -> str:
        if value is None:
            raise ValueError("expected a regular expression")
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"invalid regex {value!r}: {exc}") from None
        return value

    @field_validator("exists")
    @classmethod
    def _exists(cls, value: bool | None) -> bool:
        if value is None:
            raise ValueError("expected true or false")
        return value

    @model_validator(mode="after")
    def _one_operator(self) -> Condition:
        given = [name for name in OPERATORS if _field(name) in self.model_fields_set]
        if len(given) != 1:
            found = ", ".join(given) or "none"
            raise ValueError(f"a condition needs exactly one operator of {', '.join(OPERATORS)} (found: {found})")
        return self

    @property
    def operator(self) -> Operator:
        return next(name for name in OPERATORS if _field(name) in self.model_fields_set)

    @property
    def operand(self) -> JsonValue:
        return getattr(self, _field(self.operator))  # type: ignore[no-any-return]


def _field(operator: str) -> str:
    return "in_" if operator == "in" else operator


class Approvers(_Strict):
    """Who may decide a pending call: anyone holding one of the roles or belonging to one of the teams."""

    roles: tuple[Role, ...] = ()
    teams: tuple[str, ...] = Field(default=(), description="team ids or names")

    @model_validator(mode="after")
    def _someone(self) -> Approvers:
        if not self.roles and not self.teams:
            raise ValueError("approvers needs at least one role or team")
        return self

    def admits(self, *, role: str | None, team_id: str | None = None, team_name: str | None = None) -> bool:
        """True when a key with this role and team may approve or deny (self-approval is checked elsewhere)."""
        if role is not None and role in self.roles:
            return True
        return any(team is not None and team in self.teams for team in (team_id, team_name))


DEFAULT_APPROVERS = Approvers(roles=("approver",))
_APPROVAL_FIELDS = ("approvers", "expires_after", "on_timeout")


class ToolRule(_Strict):
    """Which calls a rule covers (tool name, arguments, caller, model) and what happens to them."""

    id: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.:-]+$", description="unique across the policy set")
    match: Globs = Field(description='tool name glob(s), e.g. "payments.refund" or ["shell.*", "fs.write"]')
    when: tuple[Condition, ...] = Field(default=(), description="conditions on the arguments; all must hold")
    teams: tuple[str, ...] | None = Field(default=None, min_length=1, description="caller's team ids or names")
    roles: tuple[Role, ...] | None = Field(default=None, min_length=1, description="caller's key role")
    models: Globs | None = Field(default=None, description="public model names or globs")
    action: ToolAction
    risk: Risk = "medium"
    approvers: Approvers | None = Field(default=None, description="require_approval only; default: the section's")
    expires_after: Duration | None = Field(default=None, description="require_approval only: 30s, 15m, 2h, 1d")
    on_timeout: OnTimeout | None = Field(default=None, description="require_approval only; default: the section's")
    message: str | None = Field(default=None, description="shown to the model and the user when the rule bites")

    @model_validator(mode="after")
    def _approval_fields(self) -> ToolRule:
        stray = [name for name in _APPROVAL_FIELDS if getattr(self, name) is not None]
        if stray and self.action != "require_approval":
            raise ValueError(f"{', '.join(stray)} only apply to action require_approval (this rule: {self.action})")
        return self


class ToolRules(_Strict):
    """A policy's `tools:` section: rules for the tool calls a model asks for, and what applies otherwise."""

    default: ToolAction = Field(description="the action when no rule matches")
    on_deny: OnDeny = Field(
        default="explain", description="explain: remove the call and say why; error: the response becomes a 403"
    )
    approvers: Approvers = Field(default=DEFAULT_APPROVERS, description="for rules (and a default) without their own")
    expires_after: Duration = Field(default="15m", description="how long an approval may stay pending")
    on_timeout: OnTimeout = Field(default="deny", description="what an expired approval becomes")
    rules: tuple[ToolRule, ...] = ()

    @field_validator("rules")
    @classmethod
    def _unique_ids(cls, rules: tuple[ToolRule, ...]) -> tuple[ToolRule, ...]:
        seen: set[str] = set()
        for rule in rules:
            if rule.id in RESERVED_RULE_IDS:
                raise ValueError(f"rule id {rule.id!r} is reserved for the engine's own decisions")
            if rule.id in seen:
                raise ValueError(f"duplicate tool rule id {rule.id!r}")
            seen.add(rule.id)
        return rules


# --- compiled form ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CompiledCondition:
    path: tuple[tuple[str, int | None], ...]  # each key, and its list index when it is all ASCII digits
    operator: Operator
    operand: JsonValue
    pattern: re.Pattern[str] | None  # regex only


@dataclass(frozen=True, slots=True)
class CompiledToolRule:
    id: str
    tool: re.Pattern[str]
    conditions: tuple[CompiledCondition, ...]
    teams: frozenset[str] | None
    roles: frozenset[str] | None
    models: re.Pattern[str] | None
    action: ToolAction
    risk: Risk
    approvers: Approvers | None  # set (own or the section's) only for require_approval
    expires_after_s: int | None
    on_timeout: OnTimeout | None
    message: str | None


@dataclass(frozen=True, slots=True)
class CompiledToolRules:
    """One policy's tool rules, ready for governance/engine.py's evaluate()."""

    policy: str
    shadow: bool
    default: ToolAction
    on_deny: OnDeny
    approvers: Approvers
    expires_after_s: int
    on_timeout: OnTimeout
    rules: tuple[CompiledToolRule, ...]
    _by_tool: dict[str, tuple[CompiledToolRule, ...]] = field(default_factory=dict, compare=False, repr=False)

    def rules_for(self, tool_name: str) -> tuple[CompiledToolRule, ...]:
        """The rules whose glob matches this tool name, in file order; memoised per name."""
        found = self._by_tool.get(tool_name)
        if found is None:
            found = tuple(rule for rule in self.rules if rule.tool.fullmatch(tool_name))
            if len(self._by_tool) < 10_000:  # tool names come from model output: bound the memo
                self._by_tool[tool_name] = found
        return found


def glob_pattern(globs: Iterable[str], *, ignore_case: bool = False) -> re.Pattern[str]:
    """fnmatch globs (`*`, `?`, `[seq]`) as one compiled pattern; use with fullmatch."""
    return re.compile("|".join(f"(?:{fnmatch.translate(g)})" for g in globs), re.IGNORECASE if ignore_case else 0)


def compile_path(arg: str) -> tuple[tuple[str, int | None], ...]:
    return tuple((key, int(key) if key.isascii() and key.isdigit() else None) for key in arg.split("."))


def compile_condition(condition: Condition) -> CompiledCondition:
    operator = condition.operator
    operand = condition.operand
    pattern = re.compile(operand) if operator == "regex" and isinstance(operand, str) else None
    return CompiledCondition(path=compile_path(condition.arg), operator=operator, operand=operand, pattern=pattern)


def compile_tool_rules(tools: ToolRules, *, policy: str = "", shadow: bool = False) -> CompiledToolRules:
    """Globs, regexes and durations compiled once; approval defaults filled from the section."""
    rules = []
    for rule in tools.rules:
        gated = rule.action == "require_approval"
        expires = rule.expires_after or tools.expires_after
        rules.append(
            CompiledToolRule(
                id=rule.id,
                # Tool names match case-insensitively: a model calling "Shell.exec" must not slip past "shell.*".
                tool=glob_pattern(rule.match, ignore_case=True),
                conditions=tuple(compile_condition(condition) for condition in rule.when),
                teams=frozenset(rule.teams) if rule.teams is not None else None,
                roles=frozenset(rule.roles) if rule.roles is not None else None,
                models=glob_pattern(rule.models) if rule.models is not None else None,
                action=rule.action,
                risk=rule.risk,
                approvers=(rule.approvers or tools.approvers) if gated else None,
                expires_after_s=parse_duration(expires) if gated else None,
                on_timeout=(rule.on_timeout or tools.on_timeout) if gated else None,
                message=rule.message,
            )
        )
    return CompiledToolRules(
        policy=policy,
        shadow=shadow,
        default=tools.default,
        on_deny=tools.on_deny,
        approvers=tools.approvers,
        expires_after_s=parse_duration(tools.expires_after),
        on_timeout=tools.on_timeout,
        rules=tuple(rules),
    )
