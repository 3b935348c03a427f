"""Eval assertions as a suite writes them: the shapes that load and the ones refused (with the field), every
deterministic type against outputs that pass and fail, `not-` forms, and reasons that say what was expected and seen.
(Governance: test_assertions_governance.py; similar and llm_judge: test_assertions_models.py.)"""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from gateway.evals.assertions import ASSERTION_TYPES, evaluate, parse_assertion, uses
from gateway.evals.assertions.base import clip, shorten
from gateway.evals.assertions.deterministic import edit_distance
from gateway.evals.observed import Observed, ToolCall

# The list: each of these and its not- form is a type a suite may write.
DOCUMENTED = (
    "equals contains icontains contains-any contains-all icontains-any icontains-all starts-with regex is-json "
    "json-schema tool-call levenshtein word-count finish-reason latency tokens cost similar llm_judge blocked redacted "
    "warned tool_withheld requires_approval allowed"
).split()
SCHEMA = {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]}
REFUSED = {"code": "policy_denied", "type": "permission_error", "message": "Blocked by rule pii-block."}


def observed(text: str = "", **fields: Any) -> Observed:
    return Observed(request_id="req_1", status=fields.pop("status", 200), text=text, **fields)


async def check(spec: dict[str, Any], seen: Observed) -> tuple[bool, float, str]:
    result = await evaluate(parse_assertion(spec), seen, None)  # type: ignore[arg-type]  # deterministic: no context
    assert result.error is None and result.type == spec["type"]
    return result.passed, result.score, result.reason


REFUND = observed("  Your refund of $50 was issued.", finish_reason="stop")
JSON_OUT = observed('{"name": "Ada", "age": 36}')
TOOLS = observed(
    "",
    tool_calls=[
        ToolCall("payments.refund", {"amount": 50, "currency": "EUR", "items": [{"sku": "A1"}]}, "call_1"),
        ToolCall("shell.exec", "not json", "call_2"),
    ],
)
NUMBERS = observed("one two three", latency_ms=250.0, prompt_tokens=10, completion_tokens=5, cost_usd=0.002)

CASES: list[tuple[dict[str, Any], Observed, bool]] = [
    # equals: strings as written, other JSON values against the output parsed
    ({"type": "equals", "value": "  Your refund of $50 was issued."}, REFUND, True),
    ({"type": "equals", "value": "Your refund of $50 was issued."}, REFUND, False),
    ({"type": "equals", "value": {"age": 36.0, "name": "Ada"}}, JSON_OUT, True),
    ({"type": "equals", "value": {"age": 36}}, JSON_OUT, False),
    ({"type": "equals", "value": {"age": 36}}, REFUND, False),
    ({"type": "not-equals", "value": "x"}, REFUND, True),
    # contains, icontains, starts-with
    ({"type": "contains", "value": "refund"}, REFUND, True),
    ({"type": "contains", "value": "Refund"}, REFUND, False),
    ({"type": "icontains", "value": "REFUND"}, REFUND, True),
    ({"type": "icontains", "value": "refunds"}, REFUND, False),
    ({"type": "not-contains", "value": "SSN"}, REFUND, True),
    ({"type": "not-icontains", "value": "YOUR"}, REFUND, False),
    ({"type": "starts-with", "value": "Your"}, REFUND, True),
    ({"type": "starts-with", "value": "refund"}, REFUND, False),
    ({"type": "not-starts-with", "value": "Your"}, REFUND, False),
    # contains-any / -all, case-insensitive twins
    ({"type": "contains-any", "value": ["nope", "refund"]}, REFUND, True),
    ({"type": "contains-any", "value": ["nope", "REFUND"]}, REFUND, False),
    ({"type": "contains-all", "value": ["refund", "$50"]}, REFUND, True),
    ({"type": "contains-all", "value": ["refund", "$60"]}, REFUND, False),
    ({"type": "icontains-any", "value": ["nope", "REFUND"]}, REFUND, True),
    ({"type": "icontains-any", "value": ["nope", "never"]}, REFUND, False),
    ({"type": "icontains-all", "value": ["YOUR", "Issued"]}, REFUND, True),
    ({"type": "icontains-all", "value": ["YOUR", "denied"]}, REFUND, False),
    ({"type": "not-contains-any", "value": ["SSN", "password"]}, REFUND, True),
    ({"type": "not-contains-all", "value": ["refund", "SSN"]}, REFUND, True),
    ({"type": "not-icontains-any", "value": ["ssn", "PASSWORD"]}, REFUND, True),
    ({"type": "not-icontains-any", "value": ["ssn", "YOUR"]}, REFUND, False),
    ({"type": "not-icontains-all", "value": ["YOUR", "ISSUED"]}, REFUND, False),
    ({"type": "not-icontains-all", "value": ["YOUR", "SSN"]}, REFUND, True),
    # regex: re.search, so anywhere unless anchored
    ({"type": "regex", "value": r"\$\d+"}, REFUND, True),
    ({"type": "regex", "value": r"^Your"}, REFUND, False),
    ({"type": "regex", "value": r"(?i)ISSUED\.$"}, REFUND, True),
    ({"type": "not-regex", "value": r"\d{3}-\d{2}-\d{4}"}, REFUND, True),
    # is-json, json-schema
    ({"type": "is-json"}, JSON_OUT, True),
    ({"type": "is-json"}, REFUND, False),
    ({"type": "not-is-json"}, REFUND, True),
    ({"type": "json-schema", "value": SCHEMA}, JSON_OUT, True),
    ({"type": "json-schema", "value": SCHEMA}, observed('{"age": 1}'), False),
    ({"type": "json-schema", "value": SCHEMA}, observed('{"name": 1}'), False),
    ({"type": "json-schema", "value": SCHEMA}, REFUND, False),
    ({"type": "not-json-schema", "value": SCHEMA}, observed("[]"), True),
    # tool-call: name globs (any case), conditions with the tool rules' operators
    ({"type": "tool-call"}, TOOLS, True),
    ({"type": "tool-call"}, REFUND, False),
    ({"type": "not-tool-call"}, REFUND, True),
    ({"type": "tool-call", "name": "payments.refund"}, TOOLS, True),
    ({"type": "tool-call", "name": "PAYMENTS.*"}, TOOLS, True),
    ({"type": "tool-call", "name": "payments"}, TOOLS, False),
    ({"type": "tool-call", "name": "payments.refund", "when": [{"arg": "amount", "lte": 50}]}, TOOLS, True),
    ({"type": "tool-call", "name": "payments.refund", "when": [{"arg": "amount", "gt": 50}]}, TOOLS, False),
    (
        {"type": "tool-call", "when": [{"arg": "currency", "in": ["EUR", "USD"]}, {"arg": "items.0.sku", "eq": "A1"}]},
        TOOLS,
        True,
    ),
    (
        {"type": "tool-call", "when": [{"arg": "currency", "in": ["EUR"]}, {"arg": "items.0.sku", "eq": "B2"}]},
        TOOLS,
        False,
    ),
    ({"type": "tool-call", "when": [{"arg": "currency", "regex": "^E"}]}, TOOLS, True),
    ({"type": "tool-call", "when": [{"arg": "amount", "regex": "5"}]}, TOOLS, False),  # Unknown is not a match
    ({"type": "tool-call", "name": "shell.exec"}, TOOLS, True),  # arguments that are not JSON: the name still counts
    ({"type": "tool-call", "name": "shell.exec", "when": [{"arg": "cmd", "exists": False}]}, TOOLS, False),
    ({"type": "not-tool-call", "name": "shell.*"}, TOOLS, False),
    # levenshtein: threshold is the largest distance that passes
    ({"type": "levenshtein", "value": "Your refund of $50 was issued.", "threshold": 2}, REFUND, True),
    ({"type": "levenshtein", "value": "Your refund of $50 was issued.", "threshold": 1}, REFUND, False),
    ({"type": "levenshtein", "value": "  Your refund of $60 was issued."}, REFUND, True),
    ({"type": "levenshtein", "value": "Your", "threshold": 0}, observed("Your"), True),
    ({"type": "levenshtein", "value": "Yours", "threshold": 0}, observed("Your"), False),
    ({"type": "not-levenshtein", "value": "entirely different", "threshold": 3}, REFUND, True),
    ({"type": "levenshtein", "value": "abcdefgh"}, observed("abc"), True),  # default threshold: 5 edits
    ({"type": "levenshtein", "value": "abcdefghi"}, observed("abc"), False),
    # word-count: bounds included
    ({"type": "word-count", "min": 3, "max": 3}, NUMBERS, True),
    ({"type": "word-count", "min": 4}, NUMBERS, False),
    ({"type": "word-count", "max": 2}, NUMBERS, False),
    ({"type": "word-count", "min": 0, "max": 0}, observed(" \n "), True),
    ({"type": "not-word-count", "max": 2}, NUMBERS, True),
    # finish reason, latency, tokens, cost: the limits are inclusive
    ({"type": "finish-reason", "value": "stop"}, REFUND, True),
    ({"type": "finish-reason", "value": "length"}, REFUND, False),
    ({"type": "not-finish-reason", "value": "length"}, REFUND, True),
    ({"type": "latency", "threshold": 250}, NUMBERS, True),
    ({"type": "latency", "threshold": 249.9}, NUMBERS, False),
    ({"type": "not-latency", "threshold": 100}, NUMBERS, True),
    ({"type": "tokens", "threshold": 15}, NUMBERS, True),
    ({"type": "tokens", "threshold": 0, "prompt": 0, "completion": 0}, observed(), True),
    ({"type": "tokens", "threshold": 14}, NUMBERS, False),
    ({"type": "tokens", "prompt": 10, "completion": 5}, NUMBERS, True),
    ({"type": "tokens", "prompt": 9}, NUMBERS, False),
    ({"type": "tokens", "completion": 4}, NUMBERS, False),
    ({"type": "tokens", "threshold": 100, "completion": 4}, NUMBERS, False),
    ({"type": "cost", "threshold": 0.002}, NUMBERS, True),
    ({"type": "cost", "threshold": 0.0019}, NUMBERS, False),
    ({"type": "not-cost", "threshold": 0}, NUMBERS, True),
]


@pytest.mark.parametrize(("spec", "seen", "passes"), CASES, ids=[f"{i}-{c[0]['type']}" for i, c in enumerate(CASES)])
async def test_deterministic_assertion_passes_or_fails_as_written(spec: dict, seen: Observed, passes: bool) -> None:
    passed, score, reason = await check(spec, seen)
    assert (passed, score) == (passes, 1.0 if passes else 0.0), reason
    assert reason.startswith("expected not (" if spec["type"].startswith("not-") else "expected ")
    assert "; saw " in reason


NESTED = {"type": "array", "items": {"type": "object", "properties": {"sku": {"type": "string"}}}}
LONG_SCHEMA = {"type": "object", "properties": {"n": {"type": "string", "description": "d" * 200}}}
SHOWN_SCHEMA = '\'{"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]}\''
FAILED = "saw no output: the call failed with 403 policy_denied ('Blocked by rule pii-block.')"

REASONS: list[tuple[dict[str, Any], Observed, str]] = [
    ({"type": "contains", "value": "refund"}, observed("no"), "expected output contains 'refund'; saw output 'no'"),
    ({"type": "icontains", "value": "x"}, observed("no"), "expected output contains (any case) 'x'; saw output 'no'"),
    ({"type": "starts-with", "value": "x"}, observed("no"), "expected output starts with 'x'; saw output 'no'"),
    ({"type": "not-contains", "value": "no"}, observed("no"), "expected not (output contains 'no'); saw output 'no'"),
    ({"type": "contains-all", "value": ["a", "no", "b"]}, observed("no"),
     """expected output contains all of '["a", "no", "b"]'; saw output 'no' (missing '["a", "b"]')"""),
    ({"type": "icontains-any", "value": ["é"]}, observed("no"),
     """expected output contains any of (any case) '["é"]'; saw output 'no' (missing '["é"]')"""),
    ({"type": "not-icontains-all", "value": ["é", "no"]}, observed("No"),
     """expected not (output contains all of (any case) '["é", "no"]'); saw output 'No' (missing '["é"]')"""),
    ({"type": "contains-any", "value": ["a"]}, observed(""),
     """expected output contains any of '["a"]'; saw output ''"""),
    ({"type": "equals", "value": "a"}, observed("b"), "expected output equal to 'a'; saw output 'b'"),
    ({"type": "equals", "value": [1]}, observed("b"),
     "expected output equal to the JSON '[1]'; saw output 'b', which is not JSON"),
    ({"type": "regex", "value": "^a"}, observed("b"), "expected output matching the regex '^a'; saw output 'b'"),
    ({"type": "is-json"}, observed("{"), "expected output that parses as JSON; saw output '{', not JSON (Expecting "
                                         "property name enclosed in double quotes: line 1 column 2 (char 1))"),
    ({"type": "not-is-json"}, observed("{}"), "expected not (output that parses as JSON); saw output '{}'"),
    ({"type": "json-schema", "value": SCHEMA}, observed('{"name": 1}'),
     f"""expected output valid against the JSON Schema {SHOWN_SCHEMA}; saw output '{{"name": 1}}', invalid at name: """
     "1 is not of type 'string'"),
    ({"type": "json-schema", "value": SCHEMA}, observed("{}"),
     f"expected output valid against the JSON Schema {SHOWN_SCHEMA}; saw output '{{}}', invalid at (root): 'name' is a "
     "required property"),
    ({"type": "json-schema", "value": SCHEMA}, observed("x"),
     f"expected output valid against the JSON Schema {SHOWN_SCHEMA}; saw output 'x', which is not JSON"),
    ({"type": "json-schema", "value": NESTED}, observed('[{"sku": "a"}, {"sku": 1}]'),
     """expected output valid against the JSON Schema '{"type": "array", "items": {"type": "object", "properties": """
     """{"sku": {"type": "string"}}}}'; saw output '[{"sku": "a"}, {"sku": 1}]', invalid at 1/sku: 1 is not of type """
     "'string'"),
    ({"type": "json-schema", "value": LONG_SCHEMA}, observed('{"n": 1}'),
     """expected output valid against the JSON Schema '{"type": "object", "properties": {"n": {"type": "string", """
     f""""description": "{'d' * 126}'... (278 chars); saw output '{{"n": 1}}', invalid at n: 1 is not of type """
     "'string'"),
    ({"type": "tool-call", "name": "a.b", "when": [{"arg": "n", "in": [1]}]}, TOOLS,
     """expected a tool call 'a.b' with arguments where '[{"arg": "n", "in": [1]}]'; saw tool calls 'payments.refund("""
     """{"amount": 50, "currency": "EUR", "items": [{"sku": "A1"}]}); shell.exec(not json)'"""),
    ({"type": "tool-call", "name": "x"}, observed(tool_calls=[ToolCall("note", {"text": "café"})]),
     """expected a tool call 'x'; saw tool calls 'note({"text": "café"})'"""),
    ({"type": "tool-call"}, observed(status=403, error=REFUSED),
     f"expected a tool call; saw no tool calls ({FAILED[4:]})"),
    ({"type": "tool-call"}, observed("hi"), "expected a tool call; saw no tool calls"),
    ({"type": "levenshtein", "value": "abc", "threshold": 1}, observed("abd"),
     "expected output within 1 edit of 'abc'; saw output 'abd', 1 edit away"),
    ({"type": "levenshtein", "value": "abc", "threshold": 2}, observed("xyz"),
     "expected output within 2 edits of 'abc'; saw output 'xyz', more than 2 edits away"),
    ({"type": "levenshtein", "value": "a", "threshold": 3}, observed("a"),
     "expected output within 3 edits of 'a'; saw output 'a', 0 edits away"),
    ({"type": "levenshtein", "value": "abcdefgh"}, observed("abc"),
     "expected output within 5 edits of 'abcdefgh'; saw output 'abc', 5 edits away"),
    ({"type": "word-count", "min": 2}, observed("a b c"), "expected at least 2 words; saw 3 words in output 'a b c'"),
    ({"type": "word-count", "min": 1}, observed("a"), "expected at least 1 word; saw 1 word in output 'a'"),
    ({"type": "word-count", "min": 0}, observed(""), "expected at least 0 words; saw 0 words in output ''"),
    ({"type": "word-count", "max": 1}, observed(""), "expected at most 1 word; saw 0 words in output ''"),
    ({"type": "word-count", "min": 1, "max": 2}, observed("a"),
     "expected between 1 and 2 words; saw 1 word in output 'a'"),
    ({"type": "finish-reason", "value": "stop"}, observed(finish_reason="length"),
     "expected finish reason 'stop'; saw finish reason 'length'"),
    ({"type": "latency", "threshold": 100}, NUMBERS, "expected latency at most 100 ms; saw 250.0 ms"),
    ({"type": "tokens", "threshold": 1, "completion": 2}, NUMBERS,
     "expected at most 1 token in all, 2 completion tokens; saw 15 tokens (10 prompt, 5 completion)"),
    ({"type": "tokens", "prompt": 3, "completion": 1}, NUMBERS,
     "expected at most 3 prompt tokens, 1 completion token; saw 15 tokens (10 prompt, 5 completion)"),
    ({"type": "cost", "threshold": 0.001}, NUMBERS, "expected cost at most $0.001; saw $0.002"),
    ({"type": "contains", "value": "x"}, observed(status=403, error=REFUSED),
     f"expected output contains 'x'; {FAILED}"),
    ({"type": "contains", "value": "x"}, observed(status=502, error={"type": "upstream_error"}),
     "expected output contains 'x'; saw no output: the call failed with 502 upstream_error"),
    ({"type": "contains", "value": "x"}, observed(status=500, error={}),
     "expected output contains 'x'; saw no output: the call failed with 500 error"),
    ({"type": "contains", "value": "x"}, observed("y" * 300),
     f"expected output contains 'x'; saw output '{'y' * 200}'... (300 chars)"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("spec", "seen", "reason"), REASONS, ids=[f"{i}-{c[0]['type']}" for i, c in enumerate(REASONS)]
)
async def test_reason_says_what_was_expected_and_what_was_seen(spec: dict, seen: Observed, reason: str) -> None:
    assert (await check(spec, seen))[2] == reason


async def test_weight_and_metric_are_carried_into_the_result() -> None:
    spec = parse_assertion({"type": "not-contains", "value": "x", "weight": 2.5, "metric": "safety"})
    result = await evaluate(spec, observed("y"), None)  # type: ignore[arg-type]
    assert (result.weight, result.metric, result.cost_usd, result.error) == (2.5, "safety", 0.0, None)
    assert result.as_json() == {"type": "not-contains", "passed": True, "score": 1.0, "weight": 2.5,
                                "reason": "expected not (output contains 'x'); saw output 'y'", "error": None,
                                "metric": "safety"}  # fmt: skip


def test_every_documented_type_and_its_not_form_loads_and_nothing_else() -> None:
    assert sorted(ASSERTION_TYPES) == sorted(DOCUMENTED + [f"not-{name}" for name in DOCUMENTED])


USES = [
    ({"type": "contains", "value": "x"}, set()),
    ({"type": "latency", "threshold": 1}, set()),
    ({"type": "not-similar", "value": "x"}, {"embed"}),
    ({"type": "llm_judge", "rubric": "r", "model": "m"}, {"judge"}),
    ({"type": "blocked"}, {"decisions"}),
    ({"type": "not-allowed"}, {"decisions"}),
    ({"type": "requires_approval"}, {"decisions"}),
]


@pytest.mark.parametrize(("spec", "needs"), USES)
def test_uses_says_what_the_runner_must_provide(spec: dict, needs: set[str]) -> None:
    assert uses(parse_assertion(spec)) == needs


GE0 = "Input should be greater than or equal to 0"
ONE_CHAR = "String should have at least 1 character"
ONE_ITEM = "List should have at least 1 item after validation, not 0"
TEXTS = "Value error, expected a non-empty text or a non-empty list of non-empty texts"
INVALID: list[tuple[dict[str, Any], tuple[Any, ...], str]] = [
    ({"type": "contain", "value": "x"}, (),
     "Input tag 'contain' found using 'type' does not match any of the expected tags: 'equals', 'not-equals', ..."),
    ({"value": "x"}, (), "Unable to extract tag using discriminator 'type'"),
    ({"type": "contains", "value": "x", "threshold": 1}, ("contains", "threshold"), "Extra inputs are not permitted"),
    ({"type": "contains", "value": ""}, ("contains", "value"), ONE_CHAR),
    ({"type": "contains"}, ("contains", "value"), "Field required"),
    ({"type": "contains", "value": "x", "weight": 0}, ("contains", "weight"), "Input should be greater than 0"),
    ({"type": "contains", "value": "x", "weight": float("inf")}, ("contains", "weight"),
     "Value error, must be a finite number"),
    ({"type": "contains", "value": "x", "metric": ""}, ("contains", "metric"), ONE_CHAR),
    ({"type": "contains-any", "value": []}, ("contains-any", "value"), ONE_ITEM),
    ({"type": "contains-all", "value": ["a", ""]}, ("contains-all", "value"),
     "Value error, values must be non-empty strings"),
    ({"type": "regex", "value": "(unclosed"}, ("regex", "value"),
     "Value error, invalid regex '(unclosed': missing ), unterminated subpattern at position 0"),
    ({"type": "not-regex", "value": "*"}, ("not-regex", "value"),
     "Value error, invalid regex '*': nothing to repeat at position 0"),
    ({"type": "regex", "value": ""}, ("regex", "value"), ONE_CHAR),
    ({"type": "json-schema", "value": {"type": "nope"}}, ("json-schema", "value"),
     "Value error, not a valid JSON Schema at type: 'nope' is not valid under any of the given schemas"),
    ({"type": "json-schema", "value": {"properties": {"name": {"type": "nope"}}}}, ("json-schema", "value"),
     "Value error, not a valid JSON Schema at properties/name/type: 'nope' is not valid under any of the given "
     "schemas"),
    ({"type": "json-schema", "value": {"minLength": -1}}, ("json-schema", "value"),
     "Value error, not a valid JSON Schema at minLength: -1 is less than the minimum of 0"),
    ({"type": "json-schema", "value": "x"}, ("json-schema", "value"), "Input should be a valid dictionary"),
    ({"type": "tool-call", "when": [{"arg": "a", "gt": "x"}]}, ("tool-call", "when", 0, "gt"),
     "Value error, expected a number, got 'x'"),
    ({"type": "tool-call", "when": [{"arg": "a"}]}, ("tool-call", "when", 0),
     "Value error, a condition needs exactly one operator of eq, ne, gt, gte, lt, lte, in, nin, regex, contains, "
     "exists (found: none)"),
    ({"type": "tool-call", "when": [{"arg": "a", "regex": "("}]}, ("tool-call", "when", 0, "regex"),
     "Value error, invalid regex '(': missing ), unterminated subpattern at position 0"),
    ({"type": "tool-call", "name": ""}, ("tool-call", "name"), ONE_CHAR),
    ({"type": "levenshtein", "value": "a", "threshold": -1}, ("levenshtein", "threshold"), GE0),
    ({"type": "word-count"}, ("word-count",), "Value error, word-count needs min, max or both"),
    ({"type": "word-count", "min": 3, "max": 2}, ("word-count",), "Value error, min (3) is greater than max (2)"),
    ({"type": "word-count", "min": -1}, ("word-count", "min"), GE0),
    ({"type": "word-count", "max": -1}, ("word-count", "max"), GE0),
    ({"type": "latency"}, ("latency", "threshold"), "Field required"),
    ({"type": "latency", "threshold": -1}, ("latency", "threshold"), GE0),
    ({"type": "latency", "threshold": float("nan")}, ("latency", "threshold"), GE0),
    ({"type": "latency", "threshold": float("inf")}, ("latency", "threshold"), "Value error, must be a finite number"),
    ({"type": "cost", "threshold": -0.01}, ("cost", "threshold"), GE0),
    ({"type": "tokens"}, ("tokens",), "Value error, tokens needs threshold (total), prompt, completion, or several"),
    ({"type": "tokens", "threshold": -1}, ("tokens", "threshold"), GE0),
    ({"type": "tokens", "prompt": -1}, ("tokens", "prompt"), GE0),
    ({"type": "tokens", "completion": -1}, ("tokens", "completion"), GE0),
    ({"type": "finish-reason", "value": ""}, ("finish-reason", "value"), ONE_CHAR),
    ({"type": "similar", "value": "x", "threshold": 1.5}, ("similar", "threshold"),
     "Input should be less than or equal to 1"),
    ({"type": "similar", "value": "x", "threshold": -0.1}, ("similar", "threshold"), GE0),
    ({"type": "similar", "value": ""}, ("similar", "value"), TEXTS),
    ({"type": "similar", "value": ["a", ""]}, ("similar", "value"), TEXTS),
    ({"type": "similar", "value": []}, ("similar", "value"), TEXTS),
    ({"type": "similar", "value": "x", "model": ""}, ("similar", "model"), ONE_CHAR),
    ({"type": "llm_judge", "rubric": "r", "model": "m", "threshold": 2}, ("llm_judge", "threshold"),
     "Input should be less than or equal to 1"),
    ({"type": "llm_judge", "model": "m"}, ("llm_judge", "rubric"), "Field required"),
    ({"type": "llm_judge", "rubric": "r"}, ("llm_judge", "model"), "Field required"),
    ({"type": "blocked", "rule": ""}, ("blocked", "rule"), ONE_CHAR),
    ({"type": "redacted", "kinds": []}, ("redacted", "kinds"), ONE_ITEM),
    ({"type": "tool_withheld", "name": ""}, ("tool_withheld", "name"), ONE_CHAR),
    ({"type": "allowed", "rule": "x"}, ("allowed", "rule"), "Extra inputs are not permitted"),
    ({"type": "blocked", "shadow": "maybe"}, ("blocked", "shadow"),
     "Input should be a valid boolean, unable to interpret input"),
]  # fmt: skip


@pytest.mark.parametrize(("spec", "loc", "message"), INVALID, ids=[f"{i}" for i in range(len(INVALID))])
def test_invalid_assertion_is_refused_naming_the_field(spec: dict, loc: tuple, message: str) -> None:
    with pytest.raises(ValidationError) as raised:
        parse_assertion(spec)
    [error] = raised.value.errors()
    assert error["loc"] == loc
    assert error["msg"].startswith(message.removesuffix("...")) if message.endswith("...") else error["msg"] == message


def test_assertions_are_frozen_and_compile_once() -> None:
    spec = parse_assertion({"type": "regex", "value": "a+"})
    with pytest.raises(ValidationError):
        spec.value = "b"  # type: ignore[union-attr]
    assert spec.negated is False and parse_assertion({"type": "not-regex", "value": "a"}).negated is True


EDITS = [("", "", 0), ("abc", "", 3), ("", "ab", 2), ("kitten", "sitting", 3), ("flaw", "lawn", 2), ("abc", "abc", 0),
         ("abcdef", "azced", 3), ("ab", "ba", 2)]  # fmt: skip


@pytest.mark.parametrize(("a", "b", "distance"), EDITS)
def test_edit_distance_is_levenshtein_and_stops_past_the_limit(a: str, b: str, distance: int) -> None:
    assert edit_distance(a, b, limit=10) == distance == edit_distance(b, a, limit=10)
    assert edit_distance(a, b, limit=distance) == distance
    if distance:
        assert edit_distance(a, b, limit=distance - 1) == distance


def test_edit_distance_past_the_limit_is_limit_plus_one() -> None:
    assert edit_distance("ab", "bxc", limit=1) == 2  # every row has a cell within 1, the last one is 3
    assert edit_distance("ab", "bxc", limit=3) == 3


def test_edit_distance_gives_up_early_on_long_far_texts() -> None:
    assert edit_distance("a" * 5000, "b" * 5000, limit=5) == 6
    assert edit_distance("a" * 50, "a" * 40, limit=5) == 6


def test_clip_and_shorten_cut_long_texts_saying_how_long() -> None:
    assert clip("ab") == "'ab'" and clip("abc", 2) == "'ab'... (3 chars)" and clip("ab", 2) == "'ab'"
    assert shorten("abc", 2) == "ab... (3 chars)" and shorten("ab", 2) == "ab"
    assert shorten("x" * 201) == "x" * 200 + "... (201 chars)" and clip("x" * 200) == repr("x" * 200)
