"""Pure evaluate(tool rules, tool call, caller) -> ToolDecision, with canonical arguments; no I/O.

Semantics, written down once:

- Arguments must be a JSON object (OpenAI sends them as a JSON string). Anything else, invalid JSON,
  a non-object ("[1]", "3"), NaN/Infinity, a number that overflows a double, a duplicated key (parsers
  disagree on which one wins, so the tool could see a value the policy never did) or a lone surrogate,
  is denied with rule id "invalid-arguments", whatever the rules say.
- A rule applies when its glob matches the tool name, its caller filters (teams: team id or name,
  roles, models: globs on the public model name) all hold, and its conditions hold (AND).
- A condition is True, False or Unknown. A key path that does not resolve (absent key, index out of
  range, stepping into a scalar) makes the condition False, except `exists: false`, which is True.
  A path splits on "." (a key that itself holds a dot cannot be addressed); a digit segment indexes a
  list and is an ordinary key in an object.
  Unknown is a present value the operator cannot compare: gt/gte/lt/lte on a non-number (bools are not
  numbers), regex on a non-string, contains on something that is neither a string nor a list (or a
  non-string needle in a string). Unknown fails closed: an `allow` rule needs every condition True, a
  `deny` or `require_approval` rule applies unless a condition is False. So `{"amount": "500"}` cannot
  slip past `{arg: amount, gt: 100}` by being a string.
- Equality (eq, ne, in, nin, contains on lists) is JSON equality: 1 == 1.0, true != 1, "1" != 1, and
  lists and objects compare element by element. ne and nin need the key present.
- regex uses re.search: the pattern may match anywhere; anchor it (^...$) to match the whole value.
- Most restrictive wins: deny > require_approval > allow; among equals the first in file order; no
  matching rule gives the section's default (rule id "default"). combine() applies the same order
  across policies (in the policy set's order) and ignores shadow-mode decisions.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from json.encoder import encode_basestring as _string  # C-accelerated; escapes what JSON.stringify does
from typing import Final

from pydantic import JsonValue

from gateway.toolcalls.rules import (
    DEFAULT_RULE_ID,
    INVALID_ARGUMENTS_RULE_ID,
    TOOL_ACTION_RANK,
    Approvers,
    CompiledCondition,
    CompiledToolRule,
    CompiledToolRules,
    OnDeny,
    OnTimeout,
    Risk,
    ToolAction,
)

BINDING_DOMAIN: Final = "gateway.tool_call.v1"


class InvalidArguments(ValueError):
    """Tool-call arguments that are not one unambiguous JSON object."""


@dataclass(frozen=True, slots=True)
class ToolCall:
    """One entry of an OpenAI `tool_calls` list: function name, raw JSON argument string, call id."""

    name: str
    arguments: str
    id: str = ""


@dataclass(frozen=True, slots=True)
class Caller:
    key_id: str
    team_id: str | None = None
    team_name: str | None = None
    role: str | None = None
    model: str = ""


@dataclass(frozen=True, slots=True)
class ToolDecision:
    """What happens to one tool call, which rule said so, and what an approval of it would bind to."""

    action: ToolAction
    rule_id: str
    risk: Risk
    tool_name: str
    call_id: str
    canonical_arguments: str | None  # None only for invalid arguments
    policy: str = ""
    shadow: bool = False
    on_deny: OnDeny = "explain"
    message: str | None = None
    approvers: Approvers | None = None  # these three are set only for require_approval
    expires_after_s: int | None = None
    on_timeout: OnTimeout | None = None
    matched: tuple[str, ...] = ()  # every rule that applied, in file order

    def binding_hash(self, policy_sha256: str, caller_key_id: str) -> str:
        """See binding_hash(); raises ValueError for a decision on invalid arguments (nothing to bind)."""
        if self.canonical_arguments is None:
            raise ValueError(f"tool call {self.call_id!r} has no canonical arguments to bind an approval to")
        return binding_hash(self.tool_name, self.canonical_arguments, policy_sha256, caller_key_id)


def evaluate(tools: CompiledToolRules, call: ToolCall, caller: Caller) -> ToolDecision:
    """The decision of one policy's tool rules on one call; never raises for any input call."""
    try:
        arguments = parse_arguments(call.arguments)
        canonical = canonical_json(arguments)
    except InvalidArguments as exc:
        return ToolDecision(
            action="deny",
            rule_id=INVALID_ARGUMENTS_RULE_ID,
            risk="high",
            tool_name=call.name,
            call_id=call.id,
            canonical_arguments=None,
            policy=tools.policy,
            shadow=tools.shadow,
            on_deny=tools.on_deny,
            message=f"Tool call {call.name!r} was refused: its arguments are not a valid JSON object ({exc}).",
        )
    matched = [rule for rule in tools.rules_for(call.name) if rule_applies(rule, arguments, caller)]
    if not matched:
        return _default(tools, call, canonical)
    winner = matched[0]
    for rule in matched[1:]:
        if TOOL_ACTION_RANK[rule.action] > TOOL_ACTION_RANK[winner.action]:
            winner = rule
    return ToolDecision(
        action=winner.action,
        rule_id=winner.id,
        risk=winner.risk,
        tool_name=call.name,
        call_id=call.id,
        canonical_arguments=canonical,
        policy=tools.policy,
        shadow=tools.shadow,
        on_deny=tools.on_deny,
        message=winner.message or _message(winner.action, call.name, winner.id),
        approvers=winner.approvers,
        expires_after_s=winner.expires_after_s,
        on_timeout=winner.on_timeout,
        matched=tuple(rule.id for rule in matched),
    )


def _default(tools: CompiledToolRules, call: ToolCall, canonical: str) -> ToolDecision:
    gated = tools.default == "require_approval"
    return ToolDecision(
        action=tools.default,
        rule_id=DEFAULT_RULE_ID,
        risk="medium",
        tool_name=call.name,
        call_id=call.id,
        canonical_arguments=canonical,
        policy=tools.policy,
        shadow=tools.shadow,
        on_deny=tools.on_deny,
        message=_message(tools.default, call.name, DEFAULT_RULE_ID),
        approvers=tools.approvers if gated else None,
        expires_after_s=tools.expires_after_s if gated else None,
        on_timeout=tools.on_timeout if gated else None,
    )


def _message(action: ToolAction, tool: str, rule_id: str) -> str | None:
    if action == "deny":
        if rule_id == DEFAULT_RULE_ID:
            return f"Tool call {tool!r} is not allowed: no policy rule permits it."
        return f"Tool call {tool!r} is not allowed by policy rule {rule_id!r}."
    if action == "require_approval":
        return f"Tool call {tool!r} needs a human approval (policy rule {rule_id!r})."
    return None


def combine(decisions: Iterable[ToolDecision]) -> ToolDecision | None:
    """The decision that governs a call evaluated by several policies: most restrictive, then the first.
    Shadow-mode decisions are ignored (record them, do not enforce them); None when none is left."""
    winner: ToolDecision | None = None
    for decision in decisions:
        if decision.shadow:
            continue
        if winner is None or TOOL_ACTION_RANK[decision.action] > TOOL_ACTION_RANK[winner.action]:
            winner = decision
    return winner


# --- rules and conditions --------------------------------------------------------------------------------

_MISSING: Final = object()
Unknown = None  # a condition's third value: present, but the operator cannot compare it


def rule_applies(rule: CompiledToolRule, arguments: dict[str, JsonValue], caller: Caller) -> bool:
    """Caller filters, then conditions with fail-closed Unknown (see the module docstring)."""
    if rule.teams is not None and caller.team_id not in rule.teams and caller.team_name not in rule.teams:
        return False
    if rule.roles is not None and caller.role not in rule.roles:
        return False
    if rule.models is not None and not rule.models.fullmatch(caller.model):
        return False
    unknown = False
    for condition in rule.conditions:
        holds = condition_holds(condition, arguments)
        if holds is False:
            return False
        if holds is Unknown:
            unknown = True
    return not unknown or rule.action != "allow"


def condition_holds(condition: CompiledCondition, arguments: dict[str, JsonValue]) -> bool | None:
    """True, False, or None (Unknown: the value is present but of a type the operator cannot compare)."""
    value = resolve(arguments, condition.path)
    if condition.operator == "exists":
        return (value is not _MISSING) is condition.operand
    if value is _MISSING:
        return False
    if condition.pattern is not None:  # regex
        return bool(condition.pattern.search(value)) if isinstance(value, str) else Unknown
    return _OPERATORS[condition.operator](value, condition.operand)


def resolve(arguments: JsonValue, path: tuple[tuple[str, int | None], ...]) -> object:
    """The value at a key path, or _MISSING; a digit key indexes a list (and is a plain key in an object)."""
    value: object = arguments
    for key, index in path:
        if isinstance(value, dict):
            if key not in value:
                return _MISSING
            value = value[key]
        elif isinstance(value, list) and index is not None and index < len(value):
            value = value[index]
        else:
            return _MISSING
    return value


def _is_number(value: object) -> bool:
    return type(value) is int or type(value) is float  # bool is an int subclass, and not a number here


def _compare(test: Callable[[float, float], bool]) -> Callable[[object, JsonValue], bool | None]:
    def compare(value: object, operand: JsonValue) -> bool | None:
        return test(value, operand) if _is_number(value) else Unknown  # type: ignore[arg-type]

    return compare


def _contains(value: object, operand: JsonValue) -> bool | None:
    if isinstance(value, str):
        return operand in value if isinstance(operand, str) else Unknown
    if isinstance(value, list):
        return any(json_equal(item, operand) for item in value)
    return Unknown


def _is_in(value: object, operand: JsonValue) -> bool:
    if isinstance(value, str) or value is None:  # a string (or null) equals only its own kind: the fast path
        return value in operand  # type: ignore[operator]
    return any(json_equal(value, item) for item in operand)  # type: ignore[union-attr]


def json_equal(a: object, b: object) -> bool:
    """JSON equality: numbers by value (1 == 1.0), bools only to bools, lists (or tuples) and objects deep."""
    if _is_number(a) and _is_number(b):
        return a == b
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(json_equal(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(json_equal(a[k], b[k]) for k in a)
    return type(a) is type(b) and a == b


_OPERATORS: dict[str, Callable[[object, JsonValue], bool | None]] = {
    "eq": json_equal,
    "ne": lambda value, operand: not json_equal(value, operand),
    "gt": _compare(lambda value, operand: value > operand),
    "gte": _compare(lambda value, operand: value >= operand),
    "lt": _compare(lambda value, operand: value < operand),
    "lte": _compare(lambda value, operand: value <= operand),
    "in": lambda value, operand: _is_in(value, operand),
    "nin": lambda value, operand: not _is_in(value, operand),
    "contains": _contains,
}


# --- arguments: parsing and canonical form ---------------------------------------------------------------


def _object(pairs: list[tuple[str, JsonValue]]) -> dict[str, JsonValue]:
    found = dict(pairs)
    if len(found) != len(pairs):
        keys = [key for key, _ in pairs]
        duplicate = next(key for i, key in enumerate(keys) if key in keys[:i])
        raise InvalidArguments(f"duplicate key {duplicate!r}")
    return found


def _float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise InvalidArguments(f"number {text} does not fit a double")
    return value


def _constant(name: str) -> float:
    raise InvalidArguments(f"{name} is not JSON")


def parse_arguments(raw: str) -> dict[str, JsonValue]:
    """The JSON object in a tool call's argument string; raises InvalidArguments for anything else."""
    if not isinstance(raw, str):
        raise InvalidArguments(f"expected a JSON string, got {type(raw).__name__}")
    try:
        value = json.loads(raw, object_pairs_hook=_object, parse_float=_float, parse_constant=_constant)
    except InvalidArguments:
        raise
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, int digit limit, nesting depth
        raise InvalidArguments(str(exc) or type(exc).__name__) from None
    if not isinstance(value, dict):
        raise InvalidArguments(f"expected an object, got {type(value).__name__ if value is not None else 'null'}")
    return value


def canonical_json(value: JsonValue) -> str:
    """RFC 8785 (JCS) style: object keys sorted by UTF-16 code units, no whitespace, strings escaped as
    JSON.stringify does (non-ASCII kept as is), floats in ECMAScript's shortest form (100.0 -> 100,
    1e-7 -> 1e-7, 1e21 -> 1e+21, -0.0 -> 0). One departure: integers parsed as integers keep every digit
    (JCS would round them to a double), so two different large amounts never share a form.
    Raises InvalidArguments when the value has no UTF-8 form (a lone surrogate) or nests too deeply."""
    try:
        text = _dump(value)
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidArguments("a string holds a lone surrogate") from None
    except RecursionError:
        raise InvalidArguments("nested too deeply") from None
    return text


def _utf16(key: str) -> bytes:
    return key.encode("utf-16-be", "surrogatepass")


def _dump(value: object) -> str:
    if isinstance(value, str):
        return _string(value)
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if type(value) is int:
        return str(value)
    if type(value) is float:
        return js_number(value)
    if isinstance(value, list | tuple):
        return "[" + ",".join(_dump(item) for item in value) + "]"
    if isinstance(value, dict):
        # Code-point order equals UTF-16 order unless a key holds a character above U+FFFF.
        keys = sorted(value) if all(key.isascii() for key in value) else sorted(value, key=_utf16)
        return "{" + ",".join(_string(key) + ":" + _dump(value[key]) for key in keys) + "}"
    raise InvalidArguments(f"{type(value).__name__} is not a JSON value")


def js_number(value: float) -> str:
    """ECMAScript Number::toString of a finite double (the number form RFC 8785 prescribes)."""
    if not math.isfinite(value):
        raise InvalidArguments(f"{value} is not JSON")
    if value == 0:
        return "0"
    sign = "-" if value < 0 else ""
    mantissa, _, exponent = repr(abs(value)).partition("e")  # repr: the shortest round-tripping digits
    whole, _, fraction = mantissa.partition(".")
    digits = (whole + fraction).lstrip("0")
    trailing = len(digits) - len(digits.rstrip("0"))
    digits = digits.rstrip("0")
    k = len(digits)
    n = int(exponent or 0) - len(fraction) + trailing + k  # value = 0.digits * 10**n
    if k <= n <= 21:
        return sign + digits + "0" * (n - k)
    if 0 < n <= 21:
        return sign + digits[:n] + "." + digits[n:]
    if -6 < n <= 0:
        return sign + "0." + "0" * -n + digits
    e = f"e{'+' if n - 1 >= 0 else '-'}{abs(n - 1)}"
    return sign + (digits if k == 1 else digits[0] + "." + digits[1:]) + e


def binding_hash(tool_name: str, canonical_arguments: str, policy_sha256: str, caller_key_id: str) -> str:
    """What an approval is bound to, as lowercase hex sha256. The hashed bytes are the UTF-8 of the
    canonical JSON array ["gateway.tool_call.v1", tool_name, canonical_arguments, policy_sha256,
    caller_key_id], every element a JSON string (the arguments as their canonical text, escaped), e.g.
    ["gateway.tool_call.v1","payments.refund","{\\"amount\\":500}","9f2c...","key_123"]. JSON framing keeps
    the fields unambiguous: no choice of tool name or key id can shift bytes from one field to the next."""
    fields: list[JsonValue] = [BINDING_DOMAIN, tool_name, canonical_arguments, policy_sha256, caller_key_id]
    return hashlib.sha256(canonical_json(fields).encode("utf-8")).hexdigest()
