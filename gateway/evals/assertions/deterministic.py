"""Deterministic assertions: the output's text (equals, contains..., regex, JSON, levenshtein, word count), the tool
calls it made (the operator vocabulary of tool rules), and the call's facts (finish reason, latency, tokens, cost).

Each scores 1 when its expectation holds and 0 otherwise. Text ones read `Observed.text` (a failed call has none,
and its reason says how it failed); `tool-call` reads the tool calls the client received.
"""

from __future__ import annotations

import json
import re
from typing import Any, Literal

import jsonschema
from pydantic import Field, JsonValue, PrivateAttr, field_validator, model_validator

from gateway.evals.assertions.base import Assertion, NonNegative, Outcome, clip, held, output_seen, plural, shorten
from gateway.evals.observed import Observed, ToolCall
from gateway.toolcalls.engine import condition_holds, json_equal
from gateway.toolcalls.rules import Condition, compile_condition, glob_pattern


class Equals(Assertion):
    """The whole output equals `value`: a string compares as written; any other JSON value compares with the output
    parsed as JSON (1 == 1.0, key order ignored)."""

    type: Literal["equals", "not-equals"]
    value: JsonValue

    def expectation(self) -> str:
        if isinstance(self.value, str):
            return f"output equal to {clip(self.value)}"
        return f"output equal to the JSON {clip(json.dumps(self.value))}"

    def check(self, observed: Observed) -> Outcome:
        if isinstance(self.value, str):
            return held(observed.text == self.value, output_seen(observed))
        try:
            parsed = json.loads(observed.text)
        except ValueError:
            return held(False, f"{output_seen(observed)}, which is not JSON")
        return held(json_equal(parsed, self.value), output_seen(observed))


class Contains(Assertion):
    """`contains` / `icontains` (case-insensitive): `value` occurs in the output; `starts-with`: the output (leading
    whitespace ignored) begins with it."""

    type: Literal["contains", "not-contains", "icontains", "not-icontains", "starts-with", "not-starts-with"]
    value: str = Field(min_length=1)

    def expectation(self) -> str:
        kind = self.type.removeprefix("not-")
        verb = {"contains": "contains", "icontains": "contains (any case)", "starts-with": "starts with"}[kind]
        return f"output {verb} {clip(self.value)}"

    def check(self, observed: Observed) -> Outcome:
        kind, text = self.type.removeprefix("not-"), observed.text
        if kind == "contains":
            found = self.value in text
        elif kind == "icontains":
            found = self.value.casefold() in text.casefold()
        else:
            found = text.lstrip().startswith(self.value)
        return held(found, output_seen(observed))


class ContainsSome(Assertion):
    """`contains-any` / `contains-all` and their case-insensitive `icontains-` twins over a list of values."""

    type: Literal[
        "contains-any", "not-contains-any", "contains-all", "not-contains-all",
        "icontains-any", "not-icontains-any", "icontains-all", "not-icontains-all",
    ]  # fmt: skip
    value: list[str] = Field(min_length=1)

    @field_validator("value")
    @classmethod
    def _non_empty(cls, value: list[str]) -> list[str]:
        if any(not item for item in value):
            raise ValueError("values must be non-empty strings")
        return value

    def expectation(self) -> str:
        kind = self.type.removeprefix("not-")
        which = "all of" if kind.endswith("-all") else "any of"
        case = " (any case)" if kind.startswith("i") else ""
        return f"output contains {which}{case} {clip(json.dumps(self.value, ensure_ascii=False))}"

    def check(self, observed: Observed) -> Outcome:
        kind = self.type.removeprefix("not-")
        text = observed.text.casefold() if kind.startswith("i") else observed.text
        needles = [v.casefold() for v in self.value] if kind.startswith("i") else self.value
        missing = [original for original, needle in zip(self.value, needles, strict=True) if needle not in text]
        found = not missing if kind.endswith("-all") else len(missing) < len(self.value)
        seen = output_seen(observed)
        if missing and observed.text:
            seen += f" (missing {clip(json.dumps(missing, ensure_ascii=False))})"
        return held(found, seen)


class Regex(Assertion):
    """The Python regex `value` is found anywhere in the output (re.search; anchor it to match the whole)."""

    type: Literal["regex", "not-regex"]
    value: str = Field(min_length=1)
    _pattern: re.Pattern[str] = PrivateAttr()

    @field_validator("value")
    @classmethod
    def _compiles(cls, value: str) -> str:
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"invalid regex {value!r}: {exc}") from None
        return value

    def model_post_init(self, context: Any, /) -> None:
        self._pattern = re.compile(self.value)

    def expectation(self) -> str:
        return f"output matching the regex {clip(self.value)}"

    def check(self, observed: Observed) -> Outcome:
        return held(self._pattern.search(observed.text) is not None, output_seen(observed))


class IsJson(Assertion):
    """The whole output parses as JSON (surrounding whitespace allowed)."""

    type: Literal["is-json", "not-is-json"]

    def expectation(self) -> str:
        return "output that parses as JSON"

    def check(self, observed: Observed) -> Outcome:
        try:
            json.loads(observed.text)
        except ValueError as exc:
            return held(False, f"{output_seen(observed)}, not JSON ({exc})")
        return held(True, output_seen(observed))


class JsonSchema(Assertion):
    """The output parses as JSON and is valid against the JSON Schema `value` (checked as a schema at load)."""

    type: Literal["json-schema", "not-json-schema"]
    value: dict[str, JsonValue]
    _validator: Any = PrivateAttr()

    @field_validator("value")
    @classmethod
    def _is_schema(cls, value: dict[str, JsonValue]) -> dict[str, JsonValue]:
        try:
            jsonschema.validators.validator_for(value).check_schema(value)
        except jsonschema.SchemaError as exc:
            where = "/".join(str(part) for part in exc.absolute_path)
            raise ValueError(f"not a valid JSON Schema{f' at {where}' if where else ''}: {exc.message}") from None
        return value

    def model_post_init(self, context: Any, /) -> None:
        self._validator = jsonschema.validators.validator_for(self.value)(self.value)

    def expectation(self) -> str:
        return f"output valid against the JSON Schema {clip(json.dumps(self.value))}"

    def check(self, observed: Observed) -> Outcome:
        try:
            parsed = json.loads(observed.text)
        except ValueError:
            return held(False, f"{output_seen(observed)}, which is not JSON")
        error = jsonschema.exceptions.best_match(self._validator.iter_errors(parsed))
        if error is None:
            return held(True, output_seen(observed))
        where = "/".join(str(part) for part in error.absolute_path) or "(root)"
        return held(False, f"{output_seen(observed)}, invalid at {where}: {shorten(error.message)}")


class ToolCallMade(Assertion):
    """The answer holds a tool call whose name matches the glob `name` (any name when omitted, case-insensitive like
    tool rules) and whose JSON arguments satisfy every condition of `when` (the tool rules' operators)."""

    type: Literal["tool-call", "not-tool-call"]
    name: str | None = Field(default=None, min_length=1, description='tool name glob, e.g. "payments.refund"')
    when: tuple[Condition, ...] = Field(default=(), description="conditions on the arguments; all must hold")
    _name: re.Pattern[str] | None = PrivateAttr()
    _conditions: tuple[Any, ...] = PrivateAttr()

    def model_post_init(self, context: Any, /) -> None:
        self._name = glob_pattern([self.name], ignore_case=True) if self.name is not None else None
        self._conditions = tuple(compile_condition(condition) for condition in self.when)

    def expectation(self) -> str:
        what = f"a tool call {self.name!r}" if self.name is not None else "a tool call"
        if self.when:
            conditions = [c.model_dump(by_alias=True, exclude_defaults=True) for c in self.when]
            what += f" with arguments where {clip(json.dumps(conditions))}"
        return what

    def _matches(self, call: ToolCall) -> bool:
        if self._name is not None and not self._name.fullmatch(call.name):
            return False
        if not self._conditions:
            return True
        arguments = call.arguments
        if not isinstance(arguments, dict):
            return False
        return all(condition_holds(condition, arguments) is True for condition in self._conditions)

    def check(self, observed: Observed) -> Outcome:
        found = any(self._matches(call) for call in observed.tool_calls)
        if not observed.tool_calls:
            return held(found, "no tool calls" + (f" ({output_seen(observed)})" if observed.error else ""))
        calls = [f"{call.name}({_arguments(call.arguments)})" for call in observed.tool_calls]
        return held(found, f"tool calls {clip('; '.join(calls))}")


def _arguments(arguments: object) -> str:
    return arguments if isinstance(arguments, str) else json.dumps(arguments, ensure_ascii=False)


class Levenshtein(Assertion):
    """The output is within `threshold` character edits (insertions, deletions, substitutions) of `value`."""

    type: Literal["levenshtein", "not-levenshtein"]
    value: str
    threshold: int = Field(default=5, ge=0, description="the largest edit distance that passes")

    def expectation(self) -> str:
        return f"output within {plural(self.threshold, 'edit')} of {clip(self.value)}"

    def check(self, observed: Observed) -> Outcome:
        distance = edit_distance(observed.text, self.value, limit=self.threshold)
        within = distance <= self.threshold
        shown = plural(distance, "edit") if within else f"more than {plural(self.threshold, 'edit')}"
        return held(within, f"{output_seen(observed)}, {shown} away")


def edit_distance(a: str, b: str, *, limit: int) -> int:
    """Levenshtein distance of a and b, or limit + 1 as soon as it is known to exceed limit."""
    if abs(len(a) - len(b)) > limit:
        return limit + 1
    previous = list(range(len(b) + 1))
    for i, char in enumerate(a, 1):
        current = [i]
        for j, other in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (char != other)))
        if min(current) > limit:
            return limit + 1
        previous = current
    return min(previous[-1], limit + 1)


class WordCount(Assertion):
    """The output has at least `min` and at most `max` words (split on whitespace)."""

    type: Literal["word-count", "not-word-count"]
    min: int | None = Field(default=None, ge=0)
    max: int | None = Field(default=None, ge=0)

    @model_validator(mode="after")
    def _bounds(self) -> WordCount:
        if self.min is None and self.max is None:
            raise ValueError("word-count needs min, max or both")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min ({self.min}) is greater than max ({self.max})")
        return self

    def expectation(self) -> str:
        if self.max is None:
            return f"at least {plural(self.min or 0, 'word')}"
        if self.min is None:
            return f"at most {plural(self.max, 'word')}"
        return f"between {self.min} and {plural(self.max, 'word')}"

    def check(self, observed: Observed) -> Outcome:
        count = len(observed.text.split())
        fits = (self.min is None or count >= self.min) and (self.max is None or count <= self.max)
        return held(fits, f"{plural(count, 'word')} in {output_seen(observed)}")


class FinishReason(Assertion):
    """The first choice finished for this reason (stop, length, tool_calls, content_filter)."""

    type: Literal["finish-reason", "not-finish-reason"]
    value: str = Field(min_length=1)

    def expectation(self) -> str:
        return f"finish reason {self.value!r}"

    def check(self, observed: Observed) -> Outcome:
        return held(observed.finish_reason == self.value, f"finish reason {observed.finish_reason!r}")


class Latency(Assertion):
    """The call (as the runner timed it) took at most `threshold` milliseconds."""

    type: Literal["latency", "not-latency"]
    threshold: NonNegative = Field(description="milliseconds")

    def expectation(self) -> str:
        return f"latency at most {self.threshold:g} ms"

    def check(self, observed: Observed) -> Outcome:
        return held(observed.latency_ms <= self.threshold, f"{observed.latency_ms:.1f} ms")


class Tokens(Assertion):
    """At most `threshold` tokens in all, and/or at most `prompt` prompt tokens and `completion` completion tokens."""

    type: Literal["tokens", "not-tokens"]
    threshold: int | None = Field(default=None, ge=0, description="the most tokens in all (prompt + completion)")
    prompt: int | None = Field(default=None, ge=0)
    completion: int | None = Field(default=None, ge=0)

    @model_validator(mode="after")
    def _some_limit(self) -> Tokens:
        if self.threshold is None and self.prompt is None and self.completion is None:
            raise ValueError("tokens needs threshold (total), prompt, completion, or several")
        return self

    def expectation(self) -> str:
        limits = [(self.threshold, "token", " in all"), (self.prompt, "prompt token", ""),
                  (self.completion, "completion token", "")]  # fmt: skip
        return "at most " + ", ".join(plural(n, noun) + tail for n, noun, tail in limits if n is not None)

    def check(self, observed: Observed) -> Outcome:
        prompt, completion = observed.prompt_tokens, observed.completion_tokens
        fits = (
            (self.threshold is None or prompt + completion <= self.threshold)
            and (self.prompt is None or prompt <= self.prompt)
            and (self.completion is None or completion <= self.completion)
        )
        return held(fits, f"{prompt + completion} tokens ({prompt} prompt, {completion} completion)")


class Cost(Assertion):
    """The target call cost at most `threshold` USD, as the gateway priced it."""

    type: Literal["cost", "not-cost"]
    threshold: NonNegative = Field(description="USD")

    def expectation(self) -> str:
        return f"cost at most ${self.threshold:g}"

    def check(self, observed: Observed) -> Outcome:
        return held(observed.cost_usd <= self.threshold, f"${observed.cost_usd:.6g}")


DETERMINISTIC = (
    Equals, Contains, ContainsSome, Regex, IsJson, JsonSchema, ToolCallMade,
    Levenshtein, WordCount, FinishReason, Latency, Tokens, Cost,
)  # fmt: skip
