"""Eval suite files: the YAML users write (pydantic, extra="forbid", exported as evals/schema.json) and the loaded
`Suite` the runner consumes, its cases resolved (defaults merged, dataset rows instantiated, templates rendered).

    # yaml-language-server: $schema=schema.json
    name: shipped-policies
    targets: [gpt-4o-mini, "prompt:support-triage@staging"]   # a matrix; `target: x` for one
    defaults: {assert: [{type: latency, threshold: 2000}], request: {temperature: 0}, repeat: 1}
    dataset: data/tickets.jsonl            # optional, relative to the suite file; with `template`
    template: {input: "Summarize: {{ text }}", assert: [{type: icontains, value: "{{ word }}"}]}
    cases: [{id: blocks-ssn, input: "My SSN is 123-45-6789", assert: [{type: blocked, rule: pii-block}]}]

Every invalid suite raises SuiteError naming the file, the case and the field path.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, JsonValue, ValidationError, model_validator

from gateway.evals.datasets import DatasetError, read_rows
from gateway.evals.templating import TemplateFailure, render_tree
from gateway.prompts.spec import LABEL, PROMPT_ID

SUITE_NAME = r"^[a-z0-9][a-z0-9._-]{0,63}$"
CASE_ID = r"^[A-Za-z0-9][A-Za-z0-9._:@/+-]{0,127}$"
SCHEMA_PATH = Path(__file__).resolve().parents[2] / "evals" / "schema.json"
LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml's: a suite of 1,000 cases parses in ~0.1 s, not 2 s
RESERVED_REQUEST = frozenset({"messages", "prompt"})  # set by the target and the case, not `request`
# `request.model` only names the model that serves a prompt target (a model target is its own model).


class SuiteError(ValueError):
    """An invalid suite: str() is "FILE[:LINE]: case ID: FIELD.PATH: message" (the parts that are known)."""

    def __init__(self, file: str, case: str | None, field: str | None, message: str, line: int | None = None):
        self.file, self.case, self.field, self.message, self.line = file, case, field, message, line
        parts = [f"{file}:{line}" if line else file]
        parts += [f"case {case}"] if case else []
        parts += [field] if field else []
        super().__init__(": ".join([*parts, message]))


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ChatMessage(BaseModel):
    """A chat message as in a request; string parts are templates rendered with the case's variables."""

    model_config = ConfigDict(extra="allow")
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[dict[str, JsonValue]] | None = None


Assertions = list[dict[str, JsonValue]]  # each validated by the assertion union (gateway.evals.assertions)


class Defaults(_Strict):
    """Merged into every case: assertions first, request fields under the case's own."""

    assert_: Assertions = Field(default_factory=list, alias="assert")
    request: dict[str, JsonValue] = Field(default_factory=dict, description="request fields every case sends")
    repeat: int = Field(default=1, ge=1, le=1000, description="attempts per case and target")
    pass_rate: float = Field(default=1.0, ge=0, le=1, description="share of the repeats that must pass")
    threshold: float = Field(default=1.0, ge=0, le=1, description="weighted score an attempt needs to pass")


class CaseBody(_Strict):
    """What a case is: the `template` a dataset row instantiates, or (with an id) an inline case."""

    description: str | None = None
    input: str | None = Field(default=None, description="shorthand for messages: [{role: user, content: input}]")
    messages: list[ChatMessage] | None = Field(default=None, min_length=1)
    vars: dict[str, JsonValue] = Field(default_factory=dict, description="template variables (a prompt's too)")
    request: dict[str, JsonValue] = Field(default_factory=dict, description="extra request fields")
    assert_: Assertions = Field(default_factory=list, alias="assert")
    repeat: int | None = Field(default=None, ge=1, le=1000)
    pass_rate: float | None = Field(default=None, ge=0, le=1)
    threshold: float | None = Field(default=None, ge=0, le=1)

    @model_validator(mode="after")
    def _one_input(self) -> CaseBody:
        if self.input is not None and self.messages is not None:
            raise ValueError("give input or messages, not both")
        reserved = sorted(RESERVED_REQUEST & self.request.keys())
        if reserved:
            raise ValueError(f"request may not set {reserved[0]} (the target and the case's input set it)")
        return self


class InlineCase(CaseBody):
    id: str = Field(pattern=CASE_ID, description="stable across runs: letters, digits and . _ : @ / + -")


class SuiteFile(_Strict):
    """One suite file."""

    name: str = Field(pattern=SUITE_NAME, description="lower-case letters, digits, '.', '_' and '-'")
    description: str | None = None
    target: str | None = Field(default=None, description="one target; or `targets`")
    targets: list[str] | None = Field(default=None, min_length=1, description="a matrix: every case against each")
    defaults: Defaults = Field(default_factory=Defaults)
    dataset: str | None = Field(default=None, description="JSONL, CSV or YAML rows, relative to the suite file")
    template: CaseBody | None = Field(default=None, description="the case each dataset row instantiates")
    cases: list[InlineCase] = Field(default_factory=list)

    @model_validator(mode="after")
    def _shape(self) -> SuiteFile:
        if (self.target is None) == (self.targets is None):
            raise ValueError("give target (one) or targets (a list), not both" if self.target else "targets is missing")
        if (self.dataset is None) != (self.template is None):
            raise ValueError("dataset and template go together (each row of the dataset instantiates the template)")
        if self.dataset is None and not self.cases:
            raise ValueError("a suite needs cases (inline, or a dataset with a template)")
        reserved = sorted(self.defaults.request.keys() & RESERVED_REQUEST)
        if reserved:
            raise ValueError(f"defaults.request may not set {reserved[0]} (the target and the cases set it)")
        return self


@dataclass(frozen=True, slots=True)
class TargetRef:
    id: str  # as written; also the `model` the runner sends (`prompt:ID@pin` is the gateway's shorthand)
    kind: Literal["model", "prompt"]
    model: str | None = None
    prompt_id: str | None = None
    label: str | None = None
    version: int | None = None


@dataclass(slots=True)
class Case:
    id: str
    description: str | None
    messages: list[dict[str, Any]] | None
    vars: dict[str, Any]
    request: dict[str, Any]
    assertions: list[Any]  # AssertionSpec models
    repeat: int
    pass_rate: float
    threshold: float
    source: str = ""  # where it is written: "cases[3]" or "data/tickets.jsonl:12"


@dataclass(slots=True)
class Suite:
    name: str
    description: str | None
    path: Path
    sha256: str
    targets: list[TargetRef]
    cases: list[Case]
    datasets: list[Path] = field(default_factory=list)


def parse_target(text: str) -> TargetRef:
    """A target as written in a suite; raises ValueError saying what is wrong."""
    if not text or text != text.strip() or any(c.isspace() for c in text):
        raise ValueError(f"invalid target {text!r}: a model name or prompt:ID@label")
    if text.startswith("ml:"):
        raise ValueError(f"target {text!r}: ml: targets are not supported yet")
    if not text.startswith("prompt:"):
        return TargetRef(id=text, kind="model", model=text)
    prompt_id, at, pin = text.removeprefix("prompt:").partition("@")
    if not re.fullmatch(PROMPT_ID, prompt_id):
        raise ValueError(f"target {text!r}: prompt id {prompt_id!r} is not a prompt id")
    if pin.isdigit():
        if int(pin) < 1:
            raise ValueError(f"target {text!r}: versions start at 1, and {pin!r} is neither a version nor a label")
        return TargetRef(id=text, kind="prompt", prompt_id=prompt_id, version=int(pin))
    if at and not re.fullmatch(LABEL, pin):
        raise ValueError(f"target {text!r}: {pin!r} is neither a version (1, 2, ...) nor a label")
    return TargetRef(id=text, kind="prompt", prompt_id=prompt_id, label=pin or "latest")


@cache
def assertion_parser() -> Callable[[object], Any]:
    """Validates one assertion mapping into its AssertionSpec model (imported when the first suite loads)."""
    from pydantic import TypeAdapter

    from gateway.evals.assertions import AssertionSpec  # type: ignore[attr-defined]

    return TypeAdapter(AssertionSpec).validate_python


def load_suite(path: str | Path) -> Suite:
    """Reads, validates and resolves a suite file; raises SuiteError naming the file, case and field."""
    path = Path(path)
    source = str(path)
    try:
        content = path.read_bytes()
    except FileNotFoundError:
        raise SuiteError(source, None, None, "no such suite file") from None
    except OSError as exc:
        raise SuiteError(source, None, None, f"cannot read the suite: {exc}") from None
    raw = _parse_yaml(content, source)
    try:
        spec = SuiteFile.model_validate(raw)
    except ValidationError as exc:
        raise _validation_error(source, exc, raw, None, "") from None
    targets = _targets(spec, source)
    cases: list[Case] = []
    first: dict[str, Case] = {}
    for i, inline in enumerate(spec.cases):
        if inline.id in first:
            message = f"duplicate case id (first at {first[inline.id].source})"
            raise SuiteError(source, inline.id, f"cases[{i}].id", message)
        first[inline.id] = _resolve(source, spec, inline, f"cases[{i}]", inline.id, {}, targets, None)
        cases.append(first[inline.id])
    datasets: list[Path] = []
    if spec.dataset is not None and spec.template is not None:
        dataset = path.parent / spec.dataset
        datasets.append(dataset)
        try:
            rows = read_rows(dataset)
        except DatasetError as exc:
            field_path = "dataset" if exc.line is None else None
            raise SuiteError(str(dataset), None, field_path, exc.message, exc.line) from None
        for row in rows:
            case = _resolve(str(dataset), spec, spec.template, "template", row.case_id, row.values, targets, row.line)
            if case.id in first:  # rows are unique among themselves: this one has an inline case's id
                raise SuiteError(str(dataset), case.id, None, f"duplicate case id (first at {first[case.id].source})",
                                 row.line)  # fmt: skip
            cases.append(case)
    return Suite(spec.name, spec.description, path, _digest(content, datasets), targets, cases, datasets)


def suite_sha256(path: str | Path) -> str:
    """sha256 over the suite file's bytes, then each of its dataset files' bytes, in order (what identifies the
    suite a run ran; the suite is not validated). Raises SuiteError for a file that cannot be read."""
    path = Path(path)
    try:
        content = path.read_bytes()
        dataset = _parse_yaml(content, str(path)).get("dataset")
        return _digest(content, [path.parent / dataset] if isinstance(dataset, str) else [])
    except OSError as exc:
        raise SuiteError(str(path), None, None, f"cannot read {exc.filename or path}: {exc.strerror}") from None


def _digest(content: bytes, datasets: list[Path]) -> str:
    digest = hashlib.sha256(content)
    for dataset in datasets:
        digest.update(dataset.read_bytes())
    return digest.hexdigest()


def _parse_yaml(content: bytes, source: str) -> dict[str, Any]:
    try:
        data = yaml.load(content.decode("utf-8-sig"), Loader=LOADER)  # a safe loader
    except UnicodeDecodeError as exc:
        raise SuiteError(source, None, None, f"not UTF-8 text ({exc})") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark else None
        raise SuiteError(source, None, None, f"invalid YAML ({getattr(exc, 'problem', exc)})", line) from None
    if not isinstance(data, dict):
        raise SuiteError(source, None, None, "expected a suite (a mapping with name, targets and cases)")
    return data


def _targets(spec: SuiteFile, source: str) -> list[TargetRef]:
    written = spec.targets if spec.targets is not None else [spec.target or ""]
    targets: list[TargetRef] = []
    for i, text in enumerate(written):
        field_path = f"targets[{i}]" if spec.targets is not None else "target"
        try:
            target = parse_target(text)
        except ValueError as exc:
            raise SuiteError(source, None, field_path, str(exc)) from None
        if any(t.id == target.id for t in targets):
            raise SuiteError(source, None, field_path, f"target {text!r} is listed twice")
        targets.append(target)
    return targets


def _resolve(source: str, spec: SuiteFile, body: CaseBody, at: str, case_id: str, row: dict[str, Any],
             targets: list[TargetRef], line: int | None) -> Case:  # fmt: skip
    """One case: defaults merged in, templates rendered with its variables, assertions validated."""
    if line is not None and not re.fullmatch(CASE_ID, case_id):
        raise SuiteError(source, None, "id", f"invalid case id {case_id!r}: letters, digits and . _ : @ / + -", line)
    variables = {**body.vars, **row}

    def render(value: object, field_path: str) -> Any:
        try:
            return render_tree(value, variables)
        except TemplateFailure as exc:
            raise SuiteError(source, case_id, field_path + exc.path, exc.message, line) from None

    if body.messages is not None:
        messages = [render(m.model_dump(exclude_none=True), f"{at}.messages[{i}]")
                    for i, m in enumerate(body.messages)]  # fmt: skip
    elif body.input is not None:
        messages = [{"role": "user", "content": render(body.input, f"{at}.input")}]
    else:
        messages = None
    model_target = next((t for t in targets if t.kind == "model"), None)
    if messages is None and model_target is not None:
        raise SuiteError(source, case_id, at, f"needs input or messages: target {model_target.id!r} is a model", line)
    if model_target is not None and ("model" in body.request or "model" in spec.defaults.request):
        where = f"{at}.request.model" if "model" in body.request else "defaults.request.model"
        raise SuiteError(source, case_id, where, f"request.model names the model that serves a prompt target; "
                         f"target {model_target.id!r} is a model (list the models as targets)", line)  # fmt: skip
    assertions = []
    parse = assertion_parser()
    written = [(f"defaults.assert[{i}]", a) for i, a in enumerate(spec.defaults.assert_)]
    written += [(f"{at}.assert[{i}]", a) for i, a in enumerate(body.assert_)]
    for field_path, data in written:
        rendered = render(data, field_path)
        try:
            assertions.append(parse(rendered))
        except ValidationError as exc:
            error = _validation_error(source, exc, rendered, case_id, field_path)
            raise SuiteError(error.file, case_id, error.field, error.message, line) from None
    defaults = spec.defaults
    return Case(
        id=case_id,
        description=render(body.description, f"{at}.description") if body.description else None,
        messages=messages,
        vars=variables,
        request={**defaults.request, **body.request},
        assertions=assertions,
        repeat=body.repeat if body.repeat is not None else defaults.repeat,
        pass_rate=body.pass_rate if body.pass_rate is not None else defaults.pass_rate,
        threshold=body.threshold if body.threshold is not None else defaults.threshold,
        source=f"{source}:{line}" if line is not None else at,
    )


def _validation_error(source: str, exc: ValidationError, data: object, case: str | None, prefix: str) -> SuiteError:
    """The first error of a validation, as a SuiteError (the count of the others in its message)."""
    errors = exc.errors()
    error = errors[0]
    loc = list(error["loc"])
    if prefix and loc and isinstance(data, dict) and loc[0] == data.get("type"):
        loc = loc[1:]  # a discriminated union puts the tag first
    path = prefix
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    if case is None and len(loc) >= 2 and loc[0] == "cases" and isinstance(loc[1], int) and isinstance(data, dict):
        cases = data.get("cases")
        if isinstance(cases, list) and isinstance(cases[loc[1]], dict):
            written = cases[loc[1]].get("id")
            case = written if isinstance(written, str) else None
    message = _message(error, data)
    if len(errors) > 1:
        message += f" (and {len(errors) - 1} more error{'s' if len(errors) > 2 else ''})"
    return SuiteError(source, case, path or None, message)


def _message(error: Any, data: object) -> str:
    kind = error["type"]
    if kind == "union_tag_invalid":
        tag = error.get("ctx", {}).get("tag")
        expected = re.findall(r"'([^']+)'", error.get("ctx", {}).get("expected_tags", ""))
        close = difflib.get_close_matches(str(tag), expected)
        return f"unknown assertion type {tag!r}" + (f" (did you mean {close[0]!r}?)" if close else "")
    if kind == "union_tag_not_found":
        return "an assertion needs a type"
    if kind == "extra_forbidden":
        return "unknown field"
    if kind == "string_pattern_mismatch":
        return f"{error['input']!r} does not match {error.get('ctx', {}).get('pattern')}"
    return str(error["msg"]).removeprefix("Value error, ")


def suite_schema() -> dict[str, Any]:
    """The JSON Schema committed as evals/schema.json (a test keeps the two equal); suites name it on their first
    line: `# yaml-language-server: $schema=schema.json`. Assertions are described by the assertion union's schema."""
    schema = SuiteFile.model_json_schema(by_alias=True)
    try:
        from pydantic import TypeAdapter

        from gateway.evals.assertions import AssertionSpec  # type: ignore[attr-defined]
    except ImportError:
        assertion: dict[str, Any] = {"type": "object", "required": ["type"]}
    else:
        union = TypeAdapter(AssertionSpec).json_schema(ref_template="#/$defs/{model}")
        schema["$defs"].update(union.pop("$defs", {}))
        assertion = union
    schema["$defs"]["Assertion"] = assertion
    for model in ("Defaults", "CaseBody", "InlineCase"):
        schema["$defs"][model]["properties"]["assert"]["items"] = {"$ref": "#/$defs/Assertion"}
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "Gateway eval suite"
    return schema


def render_schema() -> str:
    return json.dumps(suite_schema(), indent=2, sort_keys=True) + "\n"


if __name__ == "__main__":  # python -m gateway.evals.spec: regenerate evals/schema.json
    SCHEMA_PATH.parent.mkdir(exist_ok=True)
    SCHEMA_PATH.write_text(render_schema())
    print(f"wrote {SCHEMA_PATH}")
