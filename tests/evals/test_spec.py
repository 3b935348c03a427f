"""Suite files as the runner gets them: defaults merged, dataset rows instantiated, templates rendered; every invalid
suite is a SuiteError naming the file, the case and the field."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import jsonschema
import orjson
import pytest

from gateway.evals.spec import (
    SCHEMA_PATH,
    SuiteError,
    TargetRef,
    load_suite,
    parse_target,
    render_schema,
    suite_schema,
    suite_sha256,
)
from tests.evals.standin import assertion_union  # noqa: F401  (autouse: the assertion union these tests validate with)

SUITE = """\
# yaml-language-server: $schema=schema.json
name: support.triage
description: Answers stay in shape.
targets: [gpt-4o-mini, "prompt:support-triage@staging", "prompt:support-triage@3", "prompt:support-triage"]
defaults:
  assert: [{type: latency, threshold: 2000}]
  request: {temperature: 0, max_tokens: 50}
  repeat: 2
  pass_rate: 0.5
cases:
  - id: greets
    description: "Greets {{ who }}"
    input: "Say hello to {{ who }}"
    vars: {who: Ada, product: "{{ not rendered }}"}
    request: {max_tokens: 10, tool_choice: auto}
    assert: [{type: icontains, value: "{{ who }}"}, {type: contains, value: "{{ product }}", weight: 2}]
    threshold: 0.6
  - id: blocks-ssn
    messages:
      - {role: system, content: "Be brief."}
      - {role: user, content: [{type: text, text: "My SSN is {{ ssn }}"}]}
    vars: {ssn: 123-45-6789}
    assert: [{type: blocked, rule: pii-block}]
    repeat: 1
dataset: data/tickets.jsonl
template:
  input: "Summarize: {{ text }}"
  vars: {tone: calm}
  assert: [{type: icontains, value: "{{ expected }}"}]
"""
ROWS = [
    {"id": "t-1", "text": "The printer is on fire", "expected": "fire"},
    {"text": "Login fails", "expected": "login"},
]


def write(tmp_path: Path, suite: str, files: dict[str, str] | None = None, name: str = "suite.yaml") -> Path:
    for relative, content in (files or {}).items():
        (tmp_path / relative).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / relative).write_text(content)
    (tmp_path / name).write_text(suite)
    return tmp_path / name


def jsonl(rows: list[object]) -> str:
    return "".join(json.dumps(row) + "\n" for row in rows)


@pytest.fixture
def suite_path(tmp_path: Path) -> Path:
    return write(tmp_path, SUITE, {"data/tickets.jsonl": jsonl(ROWS)})


def test_a_suite_loads_with_its_defaults_merged_and_its_templates_rendered(suite_path: Path) -> None:
    suite = load_suite(suite_path)
    assert (suite.name, suite.description, suite.path) == ("support.triage", "Answers stay in shape.", suite_path)
    assert suite.targets == [
        TargetRef("gpt-4o-mini", "model", model="gpt-4o-mini"),
        TargetRef("prompt:support-triage@staging", "prompt", prompt_id="support-triage", label="staging"),
        TargetRef("prompt:support-triage@3", "prompt", prompt_id="support-triage", version=3),
        TargetRef("prompt:support-triage", "prompt", prompt_id="support-triage", label="latest"),
    ]
    greets, ssn, *rows = suite.cases
    assert greets.id == "greets" and greets.description == "Greets Ada"
    assert greets.messages == [{"role": "user", "content": "Say hello to Ada"}]
    assert greets.vars == {"who": "Ada", "product": "{{ not rendered }}"}
    assert greets.request == {"temperature": 0, "max_tokens": 10, "tool_choice": "auto"}  # the case's own win
    assert [(a.type, getattr(a, "value", None), a.weight) for a in greets.assertions] == [
        ("latency", None, 1.0),  # defaults first
        ("icontains", "Ada", 1.0),
        ("contains", "{{ not rendered }}", 2.0),  # a variable's value is inserted, never rendered again
    ]
    assert (greets.repeat, greets.pass_rate, greets.threshold) == (2, 0.5, 0.6)
    assert ssn.messages == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": [{"type": "text", "text": "My SSN is 123-45-6789"}]},
    ]
    assert (ssn.repeat, ssn.pass_rate, ssn.threshold) == (1, 0.5, 1.0)
    assert [a.type for a in ssn.assertions] == ["latency", "blocked"]
    assert [(c.id, c.messages, c.vars, c.source) for c in rows] == [
        ("t-1", [{"role": "user", "content": "Summarize: The printer is on fire"}],
         {"tone": "calm", "text": "The printer is on fire", "expected": "fire"},
         f"{suite_path.parent}/data/tickets.jsonl:1"),
        (f"tickets-{hashlib.sha256(orjson.dumps(ROWS[1], option=orjson.OPT_SORT_KEYS)).hexdigest()[:8]}",
         [{"role": "user", "content": "Summarize: Login fails"}], {"tone": "calm", **ROWS[1]},
         f"{suite_path.parent}/data/tickets.jsonl:2"),
    ]  # fmt: skip
    assert [getattr(a, "value", None) for a in rows[1].assertions] == [None, "login"]
    assert suite.datasets == [suite_path.parent / "data/tickets.jsonl"]


def test_case_ids_are_stable_and_the_sha256_covers_the_suite_and_its_dataset(suite_path: Path) -> None:
    first, again = load_suite(suite_path), load_suite(suite_path)
    assert [c.id for c in first.cases] == [c.id for c in again.cases]
    dataset = suite_path.parent / "data/tickets.jsonl"
    expected = hashlib.sha256(suite_path.read_bytes() + dataset.read_bytes()).hexdigest()
    assert first.sha256 == suite_sha256(suite_path) == expected
    dataset.write_text(jsonl([*ROWS, {"text": "x", "expected": "x"}]))
    assert suite_sha256(suite_path) != expected and len(load_suite(suite_path).cases) == 5
    assert [c.id for c in load_suite(suite_path).cases][:4] == [c.id for c in first.cases]  # other rows keep theirs


def test_csv_and_yaml_datasets(tmp_path: Path) -> None:
    body = "name: d\ntarget: m\ndataset: {}\ntemplate: {{input: 'Q: {{{{ q }}}} ({{{{ n }}}})'}}\n"
    csv_suite = write(tmp_path, body.format("rows.csv"), {"rows.csv": 'id,q,n\nfirst,"a, b",1\n\n,c,\n'}, "c.yaml")
    first, second = load_suite(csv_suite).cases
    assert (first.id, first.vars, first.messages) == (
        "first",
        {"q": "a, b", "n": "1"},
        [{"role": "user", "content": "Q: a, b (1)"}],
    )
    assert second.id.startswith("rows-") and second.vars == {"q": "c", "n": ""}  # an empty id cell: the row's hash
    yaml_suite = write(
        tmp_path, body.format("rows.yaml"), {"rows.yaml": "- {id: 7, q: x, n: 2}\n- {q: y, n: [1]}\n"}, "y.yaml"
    )
    assert [(c.id, c.vars) for c in load_suite(yaml_suite).cases][0] == ("7", {"q": "x", "n": 2})


def test_targets() -> None:
    assert parse_target("openai/gpt-4o:2024") == TargetRef("openai/gpt-4o:2024", "model", model="openai/gpt-4o:2024")
    assert parse_target("prompt:p@1") == TargetRef("prompt:p@1", "prompt", prompt_id="p", version=1)
    for bad, message in [
        ("prompt:Bad", "target 'prompt:Bad': prompt id 'Bad' is not a prompt id"),
        ("prompt:p@x y", "invalid target 'prompt:p@x y': a model name or prompt:ID@label"),
        ("", "invalid target '': a model name or prompt:ID@label"),
        (" m", "invalid target ' m': a model name or prompt:ID@label"),
        ("ml:churn@prod", "target 'ml:churn@prod': ml: targets are not supported yet"),
        ("prompt:p@0", "target 'prompt:p@0': versions start at 1, and '0' is neither a version nor a label"),
        ("prompt:p@Prod", "target 'prompt:p@Prod': 'Prod' is neither a version (1, 2, ...) nor a label"),
        ("prompt:p@", "target 'prompt:p@': '' is neither a version (1, 2, ...) nor a label"),
    ]:
        with pytest.raises(ValueError) as caught:
            parse_target(bad)
        assert str(caught.value) == message


CASE = "name: s\ntargets: [m]\ncases:\n  - id: a\n    input: hi\n"
TWO = CASE + "  - id: b\n    input: ho\n"


def case(field: str, value: str) -> tuple[str, dict[str, str]]:
    return CASE.replace("input: hi", f"{field}: {value}"), {}


def data(name: str, content: str | None, template: str = "{input: x}") -> tuple[str, dict[str, str]]:
    return CASE + f"dataset: {name}\ntemplate: {template}\n", {} if content is None else {name: content}


def edit(old: str, new: str) -> tuple[str, dict[str, str]]:
    return CASE.replace(old, new), {}


INVALID = [
    (("name: s\ntargets: [m]\ncases: [{id: a, input: x}]\nbogus: 1\n", {}), "suite.yaml: bogus: unknown field"),
    ((CASE + "    bogus: 1\n", {}), "suite.yaml: case a: cases[0].bogus: unknown field"),
    ((CASE + "    assert_: []\n", {}), "suite.yaml: case a: cases[0].assert_: unknown field"),
    ((TWO + "    assert: [{type: contain, value: x}]\n", {}),
     "suite.yaml: case b: cases[1].assert[0]: unknown assertion type 'contain' (did you mean 'contains'?)"),
    ((TWO + "    assert: [{type: similar, value: x, threshold: 3}]\n", {}),
     "suite.yaml: case b: cases[1].assert[0].threshold: …"),
    ((TWO + "    assert: [{value: x}]\n", {}), "suite.yaml: case b: cases[1].assert[0]: an assertion needs a type"),
    ((TWO + "    threshold: 1.5\n", {}),
     "suite.yaml: case b: cases[1].threshold: Input should be less than or equal to 1"),
    ((TWO + "    repeat: 0\n", {}), "suite.yaml: case b: cases[1].repeat: Input should be greater than or equal to 1"),
    (edit("cases:", "defaults: {assert: [{type: contains}]}\ncases:"),
     "suite.yaml: case a: defaults.assert[0].value: …"),
    ((TWO.replace("id: b", "id: a"), {}), "suite.yaml: case a: cases[1].id: duplicate case id (first at cases[0])"),
    ((CASE + "    messages: [{role: user, content: x}]\n", {}),
     "suite.yaml: case a: cases[0]: give input or messages, not both"),
    (("name: s\ntargets: [m]\ncases: [{id: a}]\n", {}),
     "suite.yaml: case a: cases[0]: needs input or messages: target 'm' is a model"),
    ((CASE + "    request: {model: x, messages: []}\n", {}),
     "suite.yaml: case a: cases[0]: request may not set messages (the target and the case's input set it)"),
    (edit("cases:", "defaults: {request: {prompt: x, model: y}}\ncases:"),
     "suite.yaml: defaults.request may not set prompt (the target and the cases set it)"),
    (edit("cases:", "defaults: {request: {model: y}}\ncases:"),
     "suite.yaml: case a: defaults.request.model: request.model names the model that serves a prompt target; "
     "target 'm' is a model (list the models as targets)"),
    ((CASE + "    description: '{{ x }}'\n", {}),
     "suite.yaml: case a: cases[0].description: variable 'x' is undefined (the case has: none)"),
    (case("repeat: 0\n    threshold: 2\n    input", "x"),
     "suite.yaml: case a: cases[0].repeat: Input should be greater than or equal to 1 (and 1 more error)"),
    (case("repeat: 0\n    threshold: 2\n    pass_rate: 2\n    input", "x"),
     "suite.yaml: case a: cases[0].repeat: Input should be greater than or equal to 1 (and 2 more errors)"),
    (("name: s\ntargets: [m]\ncases: 3\n", {}), "suite.yaml: cases: Input should be a valid list"),
    (("name: s\ntargets: [m]\ncases: [3]\n", {}),
     "suite.yaml: cases[0]: Input should be a valid dictionary or instance of InlineCase"),
    ((CASE + "    request: {model: x}\n", {}),
     "suite.yaml: case a: cases[0].request.model: request.model names the model that serves a prompt target; "
     "target 'm' is a model (list the models as targets)"),
    (case("input", "'hi {{ who }}'"),
     "suite.yaml: case a: cases[0].input: variable 'who' is undefined (the case has: none)"),
    (case("input", "'hi {{ who }'"), "suite.yaml: case a: cases[0].input: invalid template: unexpected '}'"),
    (case("input", "\"{{ 'x' * 2000000 }}\""),
     "suite.yaml: case a: cases[0].input: went past a render limit: repeating 1 items 2000000 times would "
     "build 2000000 items, over the limit of 1000000"),
    (case("messages", "[{role: user, content: [{type: text, text: '{{ x }}'}]}]"),
     "suite.yaml: case a: cases[0].messages[0].content[0].text: variable 'x' is undefined (the case has: none)"),
    ((CASE + "    assert: [{type: icontains, value: '{{ x.y }}'}]\n", {}),
     "suite.yaml: case a: cases[0].assert[0].value: variable 'x' is undefined (the case has: none)"),
    (edit("targets: [m]", "targets: [m, 'prompt:Nope']"),
     "suite.yaml: targets[1]: target 'prompt:Nope': prompt id 'Nope' is not a prompt id"),
    (edit("targets: [m]", "targets: [m, m]"), "suite.yaml: targets[1]: target 'm' is listed twice"),
    (edit("targets: [m]", "target: ml:x"), "suite.yaml: target: target 'ml:x': ml: targets are not supported yet"),
    (edit("targets: [m]", "target: m\ntargets: [m]"), "suite.yaml: give target (one) or targets (a list), not both"),
    (edit("targets: [m]\n", ""), "suite.yaml: targets is missing"),
    (edit("name: s", "name: Bad Name"), "suite.yaml: name: 'Bad Name' does not match ^[a-z0-9][a-z0-9._-]{0,63}$"),
    (("name: s\ntargets: [m]\n", {}), "suite.yaml: a suite needs cases (inline, or a dataset with a template)"),
    (("name: s\ntargets: [m]\ncases: [{id: a, input: x}\n", {}),
     "suite.yaml:4: invalid YAML (did not find expected ',' or ']')"),
    (("- just a list\n", {}), "suite.yaml: expected a suite (a mapping with name, targets and cases)"),
    ((CASE + "dataset: d.jsonl\n", {}),
     "suite.yaml: dataset and template go together (each row of the dataset instantiates the template)"),
    (data("d.jsonl", None), "d.jsonl: dataset: no such dataset file"),
    (data("d.txt", "x"), "d.txt: dataset: unsupported dataset format '.txt': use .jsonl, .csv or .yaml"),
    (data("d.jsonl", "\n\n"), "d.jsonl: dataset: the dataset has no rows"),
    (data("d.jsonl", '{"a": 1}\n\n[1]\n'), "d.jsonl:3: a row must be a mapping of field: value, got list"),
    (data("d.jsonl", '{"a": 1}\n{"a": \n'), "d.jsonl:2: invalid JSON (Expecting value: line 1 column 7 (char 6))"),
    (data("d.jsonl", '{"a": 1}\n{"a": 1}\n'),
     "d.jsonl:2: duplicate case id 'd-015abd7f', first at line 1 (the rows are identical: give them an id field)"),
    (data("d.jsonl", '{"id": "a"}\n'), "d.jsonl:1: case a: duplicate case id (first at cases[0])"),
    (data("d.jsonl", '{"id": true}\n'), "d.jsonl:1: the id field must be a non-empty string or a number, got bool"),
    (data("d.jsonl",
     '{"id": "has space"}\n'), "d.jsonl:1: id: invalid case id 'has space': letters, digits and . _ : @ / + -"),
    (data("d.yaml", "a: 1\n"), "d.yaml:1: expected a list of rows (mappings), got dict"),
    (data("d.yaml", "- {a: 1}\n- 3\n"), "d.yaml:2: a row must be a mapping of field: value, got int"),
    (data("d.csv", "a,b\n1,2\n3\n"), "d.csv:3: 1 cells but the header has 2 columns"),
    (data("d.csv", "a,a\n1,2\n"), "d.csv:1: the header row names column 'a' twice"),
    (data("d.jsonl", '{"id": "r1", "text": "t", "word": "w"}\n{"id": "r2", "text": "t"}\n',
          "{input: '{{ text }}', assert: [{type: contains, value: '{{ word }}'}]}"),
     "d.jsonl:2: case r2: template.assert[0].value: variable 'word' is undefined (the case has: text)"),
]  # fmt: skip


@pytest.mark.parametrize(("written", "expected"), INVALID)
def test_an_invalid_suite_names_its_file_case_and_field(
    tmp_path: Path, written: tuple[str, dict[str, str]], expected: str
) -> None:
    path = write(tmp_path, *written)
    with pytest.raises(SuiteError) as caught:
        load_suite(path)
    message = str(caught.value).replace(f"{tmp_path}/", "")
    assert message.startswith(expected[:-1]) if expected.endswith("…") else message == expected


def test_a_suite_error_has_its_parts() -> None:
    error = SuiteError("evals/x.yaml", "blocks-ssn", "cases[3].assert[0].threshold", "must be between 0 and 1")
    assert str(error) == "evals/x.yaml: case blocks-ssn: cases[3].assert[0].threshold: must be between 0 and 1"
    assert (error.file, error.case, error.field, error.message, error.line) == (
        "evals/x.yaml", "blocks-ssn", "cases[3].assert[0].threshold", "must be between 0 and 1", None)  # fmt: skip
    assert str(SuiteError("d.csv", None, None, "bad", 3)) == "d.csv:3: bad"


def test_a_suite_file_that_cannot_be_read(tmp_path: Path) -> None:
    with pytest.raises(SuiteError) as caught:
        load_suite(tmp_path / "nope.yaml")
    assert str(caught.value) == f"{tmp_path}/nope.yaml: no such suite file"
    (tmp_path / "dir.yaml").mkdir()
    with pytest.raises(SuiteError) as caught:
        load_suite(tmp_path / "dir.yaml")
    assert (
        str(caught.value)
        == f"{tmp_path}/dir.yaml: cannot read the suite: [Errno 21] Is a directory: '{tmp_path}/dir.yaml'"
    )
    (tmp_path / "latin1.yaml").write_bytes(b"name: caf\xe9\n")
    with pytest.raises(SuiteError) as caught:
        load_suite(str(tmp_path / "latin1.yaml"))
    assert str(caught.value) == (f"{tmp_path}/latin1.yaml: not UTF-8 text ('utf-8' codec can't decode byte 0xe9 in "
                                 "position 9: invalid continuation byte)")  # fmt: skip


def test_a_path_may_be_a_string_and_messages_keep_what_they_carry(tmp_path: Path) -> None:
    tools = "[{id: c1, type: function, function: {name: f, arguments: '{}'}}]"
    messages = f"[{{role: user, content: hi}}, {{role: assistant, tool_calls: {tools}}}, " + (
        "{role: tool, tool_call_id: c1, content: ok}]")  # fmt: skip
    path = write(tmp_path, f"name: s\ntarget: m\ncases:\n  - id: a\n    messages: {messages}\n")
    suite = load_suite(str(path))
    assert suite.path == path and suite.sha256 == suite_sha256(str(path))
    assert suite.cases[0].messages == [
        {"role": "user", "content": "hi"},
        {
            "role": "assistant",
            "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}],
        },
        {"role": "tool", "tool_call_id": "c1", "content": "ok"},
    ]  # an absent content stays absent


def test_the_committed_schema_is_the_generated_one_and_checks_suites(suite_path: Path) -> None:
    schema = json.loads(SCHEMA_PATH.read_text())
    assert schema == suite_schema() and SCHEMA_PATH.read_text() == render_schema(), "run: python -m gateway.evals.spec"
    import yaml

    jsonschema.validate(yaml.safe_load(suite_path.read_text()), schema)
    with pytest.raises(jsonschema.ValidationError, match="'bogus' was unexpected"):
        jsonschema.validate({**yaml.safe_load(suite_path.read_text()), "bogus": 1}, schema)
    for path in sorted(SCHEMA_PATH.parent.glob("*.yaml")):
        assert path.read_text().startswith("# yaml-language-server: $schema=schema.json\n"), path.name


def test_suite_sha256_of_a_file_that_cannot_be_read(tmp_path: Path) -> None:
    with pytest.raises(SuiteError, match=r"nope.yaml: cannot read .*nope.yaml: No such file"):
        suite_sha256(tmp_path / "nope.yaml")
    path = write(tmp_path, "name: s\ndataset: gone.csv\n")
    with pytest.raises(SuiteError, match=r"suite.yaml: cannot read .*gone.csv: No such file"):
        suite_sha256(path)
