"""Tool-call arguments: what is not one JSON object is denied, the canonical form of what is, and the binding hash
an approval is tied to (RFC 8785-style JSON, ECMAScript numbers)."""

from __future__ import annotations

import hashlib

import pytest
import yaml

from gateway.toolcalls.engine import (
    Caller,
    InvalidArguments,
    ToolCall,
    ToolDecision,
    binding_hash,
    canonical_json,
    evaluate,
    js_number,
    parse_arguments,
)
from gateway.toolcalls.rules import CompiledToolRules, ToolRules, compile_tool_rules

CALLER = Caller(key_id="key_1", team_id="team_1", team_name="support", role="member", model="gpt-4o")
POLICY = "a" * 64


def compiled(text: str) -> CompiledToolRules:
    return compile_tool_rules(ToolRules.model_validate(yaml.safe_load(text)), policy="p", shadow=False)


ALLOW_ALL = compiled("default: allow\non_deny: error\nrules: [{id: all, match: '*', action: allow}]\n")
ASK_ALL = compiled("default: require_approval\n")


def decide(tools: CompiledToolRules, raw: str, name: str = "payments.refund") -> ToolDecision:
    return evaluate(tools, ToolCall(name=name, arguments=raw, id="call_1"), CALLER)


# --- arguments that are not one JSON object ----------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "not json",
        "[1]",
        "3",
        "null",
        '"a string"',
        '{"a": 1',
        '{"a": 1} trailing',
        '{"a": NaN}',
        '{"a": Infinity}',
        '{"a": 1e400}',
        '{"a": 1, "a": 2}',
        '{"a": {"b": 1, "b": 1}}',
        '{"a": "\\ud800"}',  # a lone surrogate has no UTF-8 form
        '{"a": ' + "[" * 100_000 + "]" * 100_000 + "}",
        '{"a": ' + "9" * 5000 + "}",  # past Python's int digit limit
    ],
)
def test_invalid_arguments_are_denied_whatever_the_rules(raw: str) -> None:
    decision = decide(ALLOW_ALL, raw)
    assert (decision.action, decision.rule_id, decision.on_deny) == ("deny", "invalid-arguments", "error")
    assert decision.canonical_arguments is None and decision.message


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        ("[1]", "expected an object, got list"),
        ("null", "expected an object, got null"),
        ('{"a": NaN}', "NaN is not JSON"),
        ('{"a": 1e400}', "number 1e400 does not fit a double"),
        ('{"a": 1, "b": 2, "b": 3}', "duplicate key 'b'"),
        ("{", "Expecting property name enclosed in double quotes: line 1 column 2 (char 1)"),
        (7, "expected a JSON string, got int"),  # not a string at all (a client that sent an object)
        ('{"a": "\\ud800"}', "a string holds a lone surrogate"),
        ('{"\\ud800": 1, "\u00e9": 2}', "a string holds a lone surrogate"),  # keys sorted by UTF-16 first
        ('{"a": ' + "[" * 400 + "]" * 400 + "}", "nested too deeply"),  # parses, but too deep to canonicalise
    ],
)
def test_invalid_arguments_refusal_says_what_is_wrong(raw: object, why: str) -> None:
    decision = evaluate(ALLOW_ALL, ToolCall(name="payments.refund", arguments=raw, id="call_1"), CALLER)  # type: ignore[arg-type]
    assert decision.message == (
        f"Tool call 'payments.refund' was refused: its arguments are not a valid JSON object ({why})."
    )
    with pytest.raises(ValueError, match="no canonical arguments"):
        decision.binding_hash(POLICY, "key_1")


# --- canonical arguments and the binding hash ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "canonical"),
    [
        ('{"b": 1, "a": 2}', '{"a":2,"b":1}'),
        ('{\n  "z": {"y": [3, {"d": 1, "c": 2}]},\t"a": null }', '{"a":null,"z":{"y":[3,{"c":2,"d":1}]}}'),
        ('{"n": 100.0}', '{"n":100}'),
        ('{"n": 1e2}', '{"n":100}'),
        ('{"n": -0.0}', '{"n":0}'),
        ('{"n": 0.1}', '{"n":0.1}'),
        ('{"n": 9007199254740993}', '{"n":9007199254740993}'),  # integers keep every digit
        ('{"s": "caf\\u00e9 \\u2603"}', '{"s":"café ☃"}'),
        ('{"s": "line\\nbreak \\"quoted\\" \\u0001"}', '{"s":"line\\nbreak \\"quoted\\" \\u0001"}'),
        ('{"\\uffff": 1, "\\ud83d\\ude00": 2}', '{"😀":2,"\uffff":1}'),  # UTF-16 order, as RFC 8785
        ('{"t": true, "f": false}', '{"f":false,"t":true}'),
        ("{}", "{}"),
    ],
)
def test_canonical_arguments(raw: str, canonical: str) -> None:
    assert canonical_json(parse_arguments(raw)) == canonical


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (100.0, "100"),
        (1.5, "1.5"),
        (0.3, "0.3"),
        (123.456, "123.456"),
        (1e20, "100000000000000000000"),
        (1e21, "1e+21"),
        (1.5e300, "1.5e+300"),
        (0.000001, "0.000001"),
        (1e-7, "1e-7"),
        (1.23e-18, "1.23e-18"),
        (-2.5e-10, "-2.5e-10"),
        (5e-324, "5e-324"),
        (-0.0, "0"),
    ],
)
def test_float_formatting_is_ecmascript(value: float, text: str) -> None:
    assert js_number(value) == text


def hash_of(raw: str, *, name: str = "payments.refund", policy: str = POLICY, key: str = "key_1") -> str:
    return decide(ASK_ALL, raw, name=name).binding_hash(policy, key)


def test_binding_hash_ignores_key_order_whitespace_and_number_spelling() -> None:
    first = hash_of('{"order_id": "A-1", "amount": 500, "meta": {"b": 1, "a": [1, 2]}}')
    same = [
        '{"amount":500,"meta":{"a":[1,2],"b":1},"order_id":"A-1"}',
        '  {\n"meta" : {"a": [1 , 2], "b": 1.0},\n  "amount": 5e2, "order_id": "A\\u002d1"}  ',
    ]
    assert all(hash_of(raw) == first for raw in same)


@pytest.mark.parametrize(
    "changed",
    [
        {"raw": '{"order_id": "A-1", "amount": 501}'},
        {"raw": '{"order_id": "A-1", "amount": "500"}'},
        {"raw": '{"order_id": "A-1", "amount": 500, "note": null}'},
        {"name": "payments.refund_v2"},
        {"policy": "b" * 64},
        {"key": "key_2"},
    ],
)
def test_binding_hash_changes_with_any_bound_field(changed: dict[str, str]) -> None:
    base = {"raw": '{"order_id": "A-1", "amount": 500}'}
    assert hash_of(**{**base, **changed}) != hash_of(**base)


def test_binding_hash_byte_layout_is_the_documented_one() -> None:
    expected = hashlib.sha256(
        '["gateway.tool_call.v1","payments.refund","{\\"amount\\":500,\\"note\\":\\"é\\"}","abc","key_1"]'.encode()
    ).hexdigest()
    assert binding_hash("payments.refund", '{"amount":500,"note":"é"}', "abc", "key_1") == expected
    assert hash_of('{"note": "é", "amount": 500.0}', policy="abc") == expected


@pytest.mark.parametrize(
    ("dump", "value", "message"),
    [
        (canonical_json, {"a": {1, 2}}, "set is not a JSON value"),  # only what parse_arguments yields has a form
        (js_number, float("inf"), "inf is not JSON"),
        (js_number, float("nan"), "nan is not JSON"),
    ],
)
def test_values_without_a_json_form_are_refused(dump: object, value: object, message: str) -> None:
    with pytest.raises(InvalidArguments, match=f"^{message}$"):
        dump(value)  # type: ignore[operator]
