"""Assertions that ask a model: `similar` (embeddings, batched by evaluate_many; the real local MiniLM is
tried in tests/providers/test_local.py)
and `llm_judge` (a strict JSON verdict, retried on garbage, then an error and never a pass; its cost counted)."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from gateway.errors import InvalidRequest, ModelUnavailable, UpstreamError
from gateway.evals.assertions import evaluate, evaluate_many, parse_assertion
from gateway.evals.assertions.judge import SYSTEM, judge_messages, parse_verdict
from gateway.evals.assertions.semantic import cosine
from gateway.evals.observed import Observed

PARIS = "Paris is the capital of France."
JUDGE_SPEC = {"type": "llm_judge", "rubric": "r", "model": "m"}
VECTORS = {
    PARIS: [1.0, 0.0, 0.0],
    "The capital of France is Paris.": [0.96, 0.28, 0.0],  # cosine 0.96 with PARIS
    "I like trains.": [0.6, 0.8, 0.0],  # 0.6
    "Bananas are yellow.": [0.0, 0.0, 1.0],  # 0
    "Not Paris at all.": [-1.0, 0.0, 0.0],  # -1
    "": [0.0, 0.0, 0.0],
}
LONG = "word " * 300
DENIED = {"code": "policy_denied", "type": "permission_error", "message": "Blocked."}


class Context:
    """What the runner provides: canned embeddings and judge answers, recording every request."""

    def __init__(self, answers: list[str | Exception] | None = None, **fields: Any) -> None:
        self.vars: dict[str, Any] = fields.pop("vars", {})
        self.embedded: list[tuple[str, list[str]]] = []
        self.asked: list[list[dict[str, Any]]] = []
        self.answers = list(answers or [])
        self.embed_error: Exception | None = fields.pop("embed_error", None)
        self.short = fields.pop("short", False)
        self.__dict__.update(fields)

    async def embed(self, model: str, texts: list[str]) -> list[list[float]]:
        self.embedded.append((model, texts))
        if self.embed_error is not None:
            raise self.embed_error
        if LONG in texts:
            raise InvalidRequest(f"input[{texts.index(LONG)}] is 300 tokens; all-MiniLM-L6-v2 reads at most 256.")
        return [VECTORS.get(text, [0.0, 1.0, 0.0]) for text in texts][: len(texts) - self.short]

    async def complete(self, model: str, messages: list[dict[str, Any]]) -> tuple[str, float]:
        self.asked.append(messages)
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer, 0.001


def out(text: str = "", **fields: Any) -> Observed:
    return Observed(request_id="req_1", status=fields.pop("status", 200), text=text, **fields)


SIMILAR: list[tuple[dict[str, Any], str, bool, float]] = [
    ({"type": "similar", "value": PARIS}, "The capital of France is Paris.", True, 0.96),
    ({"type": "similar", "value": PARIS}, "I like trains.", False, 0.6),
    ({"type": "similar", "value": PARIS, "threshold": 0.6}, "I like trains.", True, 0.6),  # the threshold passes
    ({"type": "similar", "value": PARIS, "threshold": 0.61}, "I like trains.", False, 0.6),
    ({"type": "similar", "value": PARIS, "threshold": 0}, "Not Paris at all.", False, 0.0),  # cosine -1 scores 0
    ({"type": "similar", "value": PARIS, "threshold": 0}, "Bananas are yellow.", True, 0.0),
    ({"type": "similar", "value": ["Bananas are yellow.", PARIS]}, "The capital of France is Paris.", True, 0.96),
    ({"type": "similar", "value": ["Bananas are yellow.", "I like trains."]}, PARIS, False, 0.6),
    ({"type": "not-similar", "value": PARIS}, "Bananas are yellow.", True, 1.0),
    ({"type": "not-similar", "value": PARIS}, "The capital of France is Paris.", False, 0.04),
]


@pytest.mark.parametrize(("spec", "output", "passes", "score"), SIMILAR)
async def test_similar_passes_on_cosine_at_least_the_threshold(spec: dict, output: str, passes: bool, score: float):
    ctx = Context()
    result = await evaluate(parse_assertion(spec), out(output), ctx)
    assert (result.passed, result.error) == (passes, None), result.reason
    assert result.score == pytest.approx(score)
    assert ctx.embedded[0][0] == "local/all-MiniLM-L6-v2"


async def test_similar_reason_gives_the_cosine_and_the_closest_value() -> None:
    one = await evaluate(parse_assertion({"type": "similar", "value": PARIS}), out("I like trains."), Context())
    assert one.reason == (
        "expected output similar to 'Paris is the capital of France.' (cosine >= 0.8); "
        "saw output 'I like trains.', cosine 0.600"
    )
    spec = parse_assertion({"type": "not-similar", "value": ["Bananas are yellow.", PARIS], "threshold": 0.5})
    many = await evaluate(spec, out("The capital of France is Paris."), Context())
    assert many.reason == (
        "expected not (output similar to one of 2 texts (cosine >= 0.5)); saw output 'The capital of France is "
        "Paris.', cosine 0.960 (closest: 'Paris is the capital of France.')"
    )


async def test_evaluate_many_embeds_each_distinct_text_once_per_model_and_keeps_order() -> None:
    specs = [
        {"type": "similar", "value": PARIS},
        {"type": "contains", "value": "Paris"},
        {"type": "similar", "value": PARIS, "model": "team-embedder"},
        {"type": "not-similar", "value": ["Bananas are yellow.", PARIS]},
        {"type": "similar", "value": "I like trains."},
    ]
    outputs = ["The capital of France is Paris.", "Paris!", "I like trains.", "I like trains.", PARIS]
    ctx = Context()
    items = [(parse_assertion(spec), out(text), ctx) for spec, text in zip(specs, outputs, strict=True)]
    together = await evaluate_many(items)
    assert sorted(ctx.embedded) == [
        ("local/all-MiniLM-L6-v2", ["The capital of France is Paris.", PARIS, "I like trains.", "Bananas are yellow."]),
        ("team-embedder", ["I like trains.", PARIS]),
    ]
    alone = [
        await evaluate(parse_assertion(spec), out(text), Context()) for spec, text in zip(specs, outputs, strict=True)
    ]
    assert [r.as_json() for r in together] == [r.as_json() for r in alone]
    assert [r.passed for r in together] == [True, True, False, True, False]


async def test_similar_embeds_its_expected_values_once_then_only_outputs() -> None:
    spec, ctx = parse_assertion({"type": "similar", "value": [PARIS, "I like trains."]}), Context()
    first = await evaluate(spec, out("The capital of France is Paris."), ctx)
    again = await evaluate_many([(spec, out("Bananas are yellow."), ctx), (spec, out(PARIS), ctx)])
    assert [texts for _, texts in ctx.embedded] == [
        ["The capital of France is Paris.", PARIS, "I like trains."],
        ["Bananas are yellow.", PARIS],
    ]
    assert [first.passed, *(r.passed for r in again)] == [True, False, True]


async def test_similar_on_a_failed_call_fails_without_embedding() -> None:
    ctx = Context()
    for kind, passes in (("similar", False), ("not-similar", True)):
        result = await evaluate(parse_assertion({"type": kind, "value": PARIS}), out(status=403, error=DENIED), ctx)
        assert (result.passed, result.score, result.error) == (passes, float(passes), None)
        assert "saw no output: the call failed with 403 policy_denied ('Blocked.')" in result.reason
    assert ctx.embedded == []


async def test_similar_embeds_an_answered_empty_output_and_a_failed_calls_partial_text() -> None:
    ctx = Context()
    spec = {"type": "similar", "value": PARIS, "threshold": 0}
    empty = await evaluate(parse_assertion(spec), out(""), ctx)  # cosine 0 with the zero vector: passes threshold 0
    partial = await evaluate(parse_assertion(spec), out("I like trains.", status=200, error=DENIED), ctx)
    assert (empty.passed, partial.passed, partial.score) == (True, True, pytest.approx(0.6))
    assert [texts for _, texts in ctx.embedded] == [["", PARIS], ["I like trains.", PARIS]]


async def test_evaluate_many_embeds_through_the_first_items_context() -> None:
    first, second = Context(), Context()
    spec = {"type": "similar", "value": PARIS}
    items = [(parse_assertion(spec), out("I like trains."), first), (parse_assertion(spec), out(PARIS), second)]
    assert [r.passed for r in await evaluate_many(items)] == [False, True]
    assert (len(first.embedded), second.embedded) == (1, [])


@pytest.mark.parametrize(
    ("ctx", "error"),
    [
        (Context(embed_error=ModelUnavailable("Local model is not installed here.")),
         "embedding model 'local/all-MiniLM-L6-v2' failed: Local model is not installed here."),
        (Context(short=True), "embedding model 'local/all-MiniLM-L6-v2' gave 1 vectors for 2 texts"),
    ],
)  # fmt: skip
async def test_similar_that_cannot_embed_is_an_error_and_never_a_pass(ctx: Context, error: str) -> None:
    for kind in ("similar", "not-similar"):
        items = [(parse_assertion({"type": kind, "value": PARIS}), out("I like trains."), ctx)]
        [result] = await evaluate_many(items)
        assert (result.passed, result.score, result.error) == (False, 0.0, error)
        assert result.reason.endswith(f"could not evaluate: {error}")


async def test_evaluate_many_sends_at_most_256_texts_per_request() -> None:
    ctx = Context()
    items = [(parse_assertion({"type": "similar", "value": PARIS}), out(f"answer {i}"), ctx) for i in range(600)]
    results = await evaluate_many(items)
    assert [len(texts) for _, texts in ctx.embedded] == [256, 256, 89]
    assert ctx.embedded[0][1][:2] == ["answer 0", PARIS] and ctx.embedded[2][1][-1] == "answer 599"
    assert {(r.passed, r.score, r.error) for r in results} == {(False, 0.0, None)}


async def test_a_text_the_model_refuses_errors_its_own_assertion_only() -> None:
    ctx = Context()
    outputs = ["The capital of France is Paris.", LONG, PARIS]
    items = [(parse_assertion({"type": "similar", "value": PARIS}), out(text), ctx) for text in outputs]
    results = await evaluate_many(items)
    assert [(r.passed, r.error) for r in results] == [
        (True, None),
        (
            False,
            "embedding model 'local/all-MiniLM-L6-v2' failed: input[0] is 300 tokens; all-MiniLM-L6-v2 reads at "
            "most 256.",
        ),
        (True, None),
    ]
    assert [len(texts) for _, texts in ctx.embedded] == [3, 2, 2, 1]  # the batch, then each alone


async def test_a_refused_batch_of_two_asks_for_each_alone() -> None:
    ctx = Context()
    items = [(parse_assertion({"type": "similar", "value": PARIS}), out(text), ctx) for text in (LONG, PARIS)]
    assert [(r.passed, r.error is None) for r in await evaluate_many(items)] == [(False, False), (True, True)]


INVALID = [
    (
        {"type": "similar", "value": ""},
        "value",
        "Value error, expected a non-empty text or a non-empty list of non-empty texts",
    ),
    (
        {"type": "similar", "value": []},
        "value",
        "Value error, expected a non-empty text or a non-empty list of non-empty texts",
    ),
    (
        {"type": "similar", "value": ["a", ""]},
        "value",
        "Value error, expected a non-empty text or a non-empty list of non-empty texts",
    ),
    ({"type": "similar", "value": "x", "model": ""}, "model", "String should have at least 1 character"),
    ({**JUDGE_SPEC, "rubric": ""}, "rubric", "String should have at least 1 character"),
    ({**JUDGE_SPEC, "model": ""}, "model", "String should have at least 1 character"),
]


@pytest.mark.parametrize(("spec", "field", "message"), INVALID)
def test_model_assertions_refuse_empty_fields_and_take_short_ones(spec: dict, field: str, message: str) -> None:
    with pytest.raises(ValidationError) as raised:
        parse_assertion(spec)
    [error] = raised.value.errors()
    assert (error["loc"], error["msg"]) == ((spec["type"], field), message)
    short = {**spec, field: ["x"] if spec[field] == [] else "x"}
    assert getattr(parse_assertion(short), field) == short[field]


def test_cosine_normalises_and_a_zero_vector_scores_zero() -> None:
    assert cosine([2.0, 0.0], [3.0, 3.0]) == pytest.approx(0.7071, abs=1e-4)
    assert cosine([0.0, 0.0], [1.0, 0.0]) == 0.0 == cosine([1.0, 0.0], [0.0, 0.0])


# --- llm_judge -------------------------------------------------------------------------------------------------

JUDGE = {"type": "llm_judge", "rubric": "Says the refund was issued, politely.", "model": "judge-mini"}
VERDICT = '{"score": 0.9, "pass": true, "reason": "Polite and says so."}'


@pytest.mark.parametrize(
    ("spec", "answer", "passes", "score"),
    [
        (JUDGE, VERDICT, True, 0.9),
        (JUDGE, '{"score": 0.5, "pass": true, "reason": "ok"}', True, 0.5),  # the default threshold passes
        (JUDGE, '{"score": 0.49, "pass": true, "reason": "meh"}', False, 0.49),
        (JUDGE, '{"score": 0.9, "pass": false, "reason": "rude"}', False, 0.9),  # the judge's fail is a fail
        ({**JUDGE, "threshold": 0.95}, VERDICT, False, 0.9),
        ({**JUDGE, "threshold": 0}, '{"score": 0, "pass": true, "reason": "x"}', True, 0.0),
        ({**JUDGE, "type": "not-llm_judge"}, VERDICT, False, 0.1),
        ({**JUDGE, "type": "not-llm_judge"}, '{"score": 0.2, "pass": false, "reason": "no"}', True, 0.8),
    ],
)
async def test_judge_verdict_decides_with_the_threshold(spec: dict, answer: str, passes: bool, score: float) -> None:
    ctx = Context([answer])
    result = await evaluate(parse_assertion(spec), out("Your refund is on its way."), ctx)
    assert (result.passed, result.error, result.cost_usd) == (passes, None, 0.001), result.reason
    assert result.score == pytest.approx(score)
    assert len(ctx.asked) == 1


async def test_judge_reason_quotes_the_verdict() -> None:
    result = await evaluate(parse_assertion(JUDGE), out("Refunded."), Context([VERDICT]))
    assert result.reason == (
        "expected judge 'judge-mini' to pass the output with score >= 0.5 on rubric 'Says the refund was issued, "
        "politely.'; saw score 0.9, pass true: 'Polite and says so.'"
    )


async def test_judge_prompt_holds_the_rubric_the_case_input_and_the_output() -> None:
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": [{"type": "text", "text": "Refund?"}]},
    ]
    ctx = Context([VERDICT], vars={"order": 42}, messages=messages)
    await evaluate(parse_assertion(JUDGE), out("Your refund is on its way."), ctx)
    [[system, user]] = ctx.asked
    assert system == {"role": "system", "content": SYSTEM}
    assert SYSTEM == (
        "You grade the output of an AI assistant against a rubric. Read the rubric, the input the assistant was given "
        "and its output, then answer with exactly one JSON object and nothing else:\n"
        '{"score": <a number from 0 to 1>, "pass": <true or false>, "reason": "<one or two sentences>"}\n'
        "score: how well the output meets the rubric (1 fully, 0 not at all). pass: whether it meets the rubric."
    )
    assert user["role"] == "user"
    assert user["content"] == (
        "# Rubric\nSays the refund was issued, politely.\n\n"
        "# Input (the conversation the assistant answered)\nsystem: Be brief.\nuser: Refund?\n\n"
        '# Variables of the case\n{\n "order": 42\n}\n\n'
        "# Output to grade\nYour refund is on its way."
    )


def test_judge_prompt_without_input_has_the_rubric_and_output_only() -> None:
    [_, user] = judge_messages("R", "O", vars={}, messages=None)
    assert user["content"] == "# Rubric\nR\n\n# Output to grade\nO"
    [_, user] = judge_messages(
        "R", "O", vars={}, messages=[{"content": None}, {"role": "tool", "content": {"a": 1}}, "x"]
    )
    assert 'user: \ntool: {"a": 1}\n\n' in user["content"]
    parts = [{"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "image_url"}, {"text": "b"}]}]
    [_, user] = judge_messages("R", "O", vars={"name": "José"}, messages=parts)
    assert user["content"] == (
        "# Rubric\nR\n\n# Input (the conversation the assistant answered)\nuser: a  b\n\n"
        '# Variables of the case\n{\n "name": "José"\n}\n\n# Output to grade\nO'
    )


async def test_judge_garbage_is_sent_back_then_a_valid_verdict_counts_and_all_calls_cost() -> None:
    ctx = Context(["Sure! It is great.", '{"score": 2, "pass": true, "reason": "x"}', VERDICT])
    result = await evaluate(parse_assertion(JUDGE), out("Refunded."), ctx)
    assert (result.passed, result.error, result.cost_usd) == (True, None, pytest.approx(0.003))
    assert [len(m) for m in ctx.asked] == [2, 4, 6]
    assert ctx.asked[1][2:] == [
        {"role": "assistant", "content": "Sure! It is great."},
        {
            "role": "user",
            "content": "That answer is not a valid verdict: not JSON. Reply with only the JSON object "
            '{"score": <0..1>, "pass": <true|false>, "reason": "<text>"}.',
        },
    ]
    assert "score must be a number from 0 to 1, got 2" in ctx.asked[2][5]["content"]


@pytest.mark.parametrize("kind", ["llm_judge", "not-llm_judge"])
async def test_judge_answering_garbage_three_times_is_an_error_never_a_pass(kind: str) -> None:
    ctx = Context(["nope", "still nope", "[1]"])
    result = await evaluate(parse_assertion({**JUDGE, "type": kind}), out("Refunded."), ctx)
    error = "judge 'judge-mini' gave no valid verdict in 3 answers (expected a JSON object, got list); last: '[1]'"
    assert (result.passed, result.score, result.error) == (False, 0.0, error)
    assert result.cost_usd == pytest.approx(0.003) and len(ctx.asked) == 3


async def test_judge_call_that_fails_is_an_error_with_what_was_spent() -> None:
    ctx = Context(["nope", UpstreamError("Upstream answered 500.")])
    result = await evaluate(parse_assertion(JUDGE), out("Refunded."), ctx)
    assert (result.passed, result.error) == (False, "judge 'judge-mini' failed: Upstream answered 500.")
    assert result.cost_usd == pytest.approx(0.001)


async def test_judge_does_not_judge_a_failed_call() -> None:
    ctx = Context([VERDICT])
    result = await evaluate(parse_assertion(JUDGE), out(status=403, error=DENIED), ctx)
    assert (result.passed, result.score, result.error, result.cost_usd, ctx.asked) == (False, 0.0, None, 0.0, [])
    assert result.reason.endswith("saw no output to judge: the call failed with 403 policy_denied ('Blocked.')")


async def test_judge_judges_an_answered_empty_output_and_a_failed_calls_partial_text() -> None:
    ctx = Context([VERDICT, VERDICT])
    empty = await evaluate(parse_assertion(JUDGE), out(""), ctx)
    partial = await evaluate(parse_assertion(JUDGE), out("Refu", error=DENIED), ctx)
    assert (empty.passed, partial.passed, len(ctx.asked)) == (True, True, 2)
    assert ctx.asked[1][1]["content"].endswith("# Output to grade\nRefu")


@pytest.mark.parametrize(
    ("answer", "verdict"),
    [
        (VERDICT, (0.9, True, "Polite and says so.")),
        ('  {"pass": false, "reason": "", "score": 0}\n', (0.0, False, "")),
        ('{"score": 1, "pass": true, "reason": "r"}', (1.0, True, "r")),
        ('```json\n{"score": 1, "pass": true, "reason": "r"}\n```', (1.0, True, "r")),
        ('```\n{"score": 1, "pass": true, "reason": "r"}\n```\n', (1.0, True, "r")),
        ('```JSON\n{"score": 1, "pass": true, "reason": "r"}```', (1.0, True, "r")),
    ],
)
def test_parse_verdict_accepts_the_strict_object(answer: str, verdict: tuple) -> None:
    found = parse_verdict(answer)
    assert (found.score, found.passed, found.reason) == verdict


@pytest.mark.parametrize(
    ("answer", "problem"),
    [
        ("", "not JSON"),
        ("The output passes.", "not JSON"),
        ('Verdict: {"score": 1, "pass": true, "reason": "r"}', "not JSON"),
        ("```python\n{}\n```", "expected one JSON object, optionally in one ```json fence"),
        ("```X\n{}\n```", "expected one JSON object, optionally in one ```json fence"),
        (
            '```json\n{"score": 1, "pass": true, "reason": "r"}',
            "expected one JSON object, optionally in one ```json fence",
        ),
        ('"pass"', "expected a JSON object, got str"),
        ('{"score": 1, "pass": true}', "expected exactly the keys score, pass, reason; got pass, score"),
        (
            '{"score": 1, "pass": true, "reason": "r", "notes": ""}',
            "expected exactly the keys score, pass, reason; got notes, pass, reason, score",
        ),
        ("{}", "expected exactly the keys score, pass, reason; got none"),
        ('{"score": "1", "pass": true, "reason": "r"}', "score must be a number from 0 to 1, got '1'"),
        ('{"score": true, "pass": true, "reason": "r"}', "score must be a number from 0 to 1, got True"),
        ('{"score": -0.1, "pass": true, "reason": "r"}', "score must be a number from 0 to 1, got -0.1"),
        ('{"score": 1.01, "pass": true, "reason": "r"}', "score must be a number from 0 to 1, got 1.01"),
        ('{"score": NaN, "pass": true, "reason": "r"}', "score must be a number from 0 to 1, got nan"),
        ('{"score": 1, "pass": "yes", "reason": "r"}', "pass must be true or false, got 'yes'"),
        ('{"score": 1, "pass": 1, "reason": "r"}', "pass must be true or false, got 1"),
        ('{"score": 1, "pass": true, "reason": null}', "reason must be a string, got None"),
    ],
)
def test_parse_verdict_refuses_anything_else_saying_why(answer: str, problem: str) -> None:
    with pytest.raises(ValueError) as raised:
        parse_verdict(answer)
    assert str(raised.value) == problem
