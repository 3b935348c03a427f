"""`gateway eval import promptfoo`: a promptfoo config's common subset becomes a suite that loads; the rest is
listed."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from gateway.evals.promptfoo import PromptfooError, import_promptfoo
from gateway.evals.spec import load_suite
from tests.evals.standin import assertion_union  # noqa: F401  (autouse)

CONFIG = """\
description: Support bot answers
prompts:
  - "Answer the customer: {{ question }}"
  - id: file://chat.json
    label: Chat Form
providers:
  - openai:gpt-4o-mini
  - id: openai:chat:gpt-4o
    config: {temperature: 0, max_tokens: 200}
  - file://custom_provider.py
defaultTest:
  vars: {product: Acme}
  assert:
    - {type: latency, threshold: 3000}
  options: {provider: openai:gpt-4o}
tests:
  - description: Refund policy
    vars: {question: "Can I get a refund?"}
    threshold: 0.5
    assert:
      - {type: icontains, value: refund}
      - {type: not-contains, value: "{{ product }} Corp"}
      - {type: contains-any, value: "days, weeks"}
      - {type: icontains-all, value: [refund, policy], weight: 2}
      - {type: starts-with, value: "Yes"}
      - {type: regex, value: "\\\\d+ days"}
      - {type: equals, value: "Yes."}
      - {type: is-json}
      - {type: is-json, value: {type: object, required: [answer]}}
      - {type: contains-json}
      - {type: similar, value: "You can get a refund within 30 days"}
      - {type: similar, value: "Refunds are possible", threshold: 0.9, metric: similarity}
      - {type: llm-rubric, value: "Is polite and mentions the policy", provider: openai:chat:gpt-4o-mini}
      - {type: llm-rubric, value: "Is short", threshold: 0.7}
      - {type: levenshtein, value: "Yes"}
      - {type: cost, threshold: 0.002}
      - {type: finish-reason, value: stop}
      - {type: javascript, value: "output.length < 500"}
      - {type: contains, value: x, transform: "output.trim()", weight: 0}
  - vars: {question: "Hi", topics: [a, b]}
    assert: [{type: not-icontains, value: sorry}]
    options: {transform: "output.toUpperCase()"}
  - description: Refund policy
    vars: {question: "Refund?"}
  - file://more_tests.yaml
outputPath: results.json
"""


@pytest.fixture
def converted(tmp_path: Path) -> tuple[Path, str, list[str]]:
    (tmp_path / "promptfooconfig.yaml").write_text(CONFIG)
    (tmp_path / "chat.json").write_text('[{"role": "system", "content": "Be brief."}, '
                                        '{"role": "user", "content": "{{ question }}"}]')  # fmt: skip
    text, unsupported = import_promptfoo(tmp_path / "promptfooconfig.yaml")
    return tmp_path, text, unsupported


def test_the_common_subset_converts(converted: tuple[Path, str, list[str]]) -> None:
    _, text, _ = converted
    assert text.startswith("# yaml-language-server: $schema=schema.json\n# Converted from promptfooconfig.yaml")
    suite = yaml.safe_load(text)
    assert suite["name"] == "support-bot-answers" and suite["description"] == "Support bot answers"
    assert suite["targets"] == ["gpt-4o-mini", "gpt-4o"]
    assert suite["defaults"] == {"assert": [{"type": "latency", "threshold": 3000}]}  # the configs differ: no request
    ids = [case["id"] for case in suite["cases"]]
    assert ids == ["refund-policy-p1", "refund-policy-chat-form", "test-2-p1", "test-2-chat-form",
                   "refund-policy-p1-3", "refund-policy-chat-form-3"]  # fmt: skip
    first, chat = suite["cases"][0], suite["cases"][1]
    assert first["input"] == "Answer the customer: {{ question }}" and "messages" not in first
    assert chat["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "{{ question }}"},
    ]
    assert first["vars"] == {
        "product": "Acme",
        "question": "Can I get a refund?",
    }  # defaultTest's vars under the test's
    assert first["threshold"] == 0.5 and first["description"] == "Refund policy"
    assert first["assert"] == [
        {"type": "icontains", "value": "refund"},
        {"type": "not-contains", "value": "{{ product }} Corp"},
        {"type": "contains-any", "value": ["days", "weeks"]},
        {"type": "icontains-all", "value": ["refund", "policy"], "weight": 2},
        {"type": "starts-with", "value": "Yes"},
        {"type": "regex", "value": "\\d+ days"},
        {"type": "equals", "value": "Yes."},
        {"type": "is-json"},
        {"type": "json-schema", "value": {"type": "object", "required": ["answer"]}},
        {"type": "similar", "value": "You can get a refund within 30 days", "threshold": 0.75},
        {"type": "similar", "value": "Refunds are possible", "threshold": 0.9, "metric": "similarity"},
        {"type": "llm_judge", "rubric": "Is polite and mentions the policy", "model": "gpt-4o-mini"},
        {"type": "llm_judge", "rubric": "Is short", "model": "gpt-4o-mini", "threshold": 0.7},
        {"type": "levenshtein", "value": "Yes", "threshold": 5},
        {"type": "cost", "threshold": 0.002},
        {"type": "finish-reason", "value": "stop"},
        {"type": "contains", "value": "x"},
    ]
    assert suite["cases"][2]["assert"] == [{"type": "not-icontains", "value": "sorry"}]


def test_what_is_not_converted_is_listed(converted: tuple[Path, str, list[str]]) -> None:
    _, _, unsupported = converted
    assert unsupported == [
        "outputPath: no equivalent in a suite file",
        "providers[2]: provider file://custom_provider.py has no equivalent: a target is a model or prompt of the "
        "gateway",
        "providers: the providers' configs differ: a suite sends the same request to every target",
        "defaultTest.options: no equivalent in a suite's defaults",
        "tests[0].assert[9]: contains-json has no equivalent",
        "tests[0].assert[13]: llm-rubric without a provider: judged by 'gpt-4o-mini'; set model: to your judge",
        "tests[0].assert[17]: javascript has no equivalent: rewrite it as a deterministic assertion",
        "tests[0].assert[18].transform: transform of a contains assertion is not converted",
        "tests[0].assert[18].weight: weight 0 (informational) is not supported: the assertion counts with 1",
        "tests[1].options: no equivalent in a suite case",
        "tests[1].vars.topics: a list does not expand into several cases as in promptfoo",
        "tests[3]: a test given as a file reference or text is not converted",
    ]


def test_the_converted_suite_loads(converted: tuple[Path, str, list[str]]) -> None:
    tmp_path, text, _ = converted
    (tmp_path / "support.yaml").write_text(text)
    suite = load_suite(tmp_path / "support.yaml")
    assert [t.id for t in suite.targets] == ["gpt-4o-mini", "gpt-4o"] and len(suite.cases) == 6
    assert suite.cases[0].messages == [{"role": "user", "content": "Answer the customer: Can I get a refund?"}]
    assert [a.type for a in suite.cases[0].assertions][:2] == ["latency", "icontains"]
    assert suite.cases[0].assertions[2].value == "Acme Corp"


def test_shared_provider_config_datasets_and_defaults(tmp_path: Path) -> None:
    (tmp_path / "p.yaml").write_text(
        "prompts: [file://q.txt]\n"
        "providers: [{id: 'anthropic:messages:claude-haiku', config: {temperature: 0.2, apiKey: x}}, "
        "{'ollama:chat:llama3:8b': {temperature: 0.2}}]\n"
        "defaultTest: {threshold: 0.8, assert: [{type: not-llm-rubric, value: rude}, {type: icontains}]}\n"
        "tests: file://rows.csv\n"
    )
    (tmp_path / "q.txt").write_text("Q: {{ q }}\n")
    text, unsupported = import_promptfoo(tmp_path / "p.yaml")
    suite = yaml.safe_load(text)
    assert suite["name"] == "p" and suite["targets"] == ["claude-haiku", "llama3:8b"]
    assert suite["defaults"] == {"assert": [{"type": "icontains"}], "threshold": 0.8, "request": {"temperature": 0.2}}
    assert (suite["dataset"], suite["template"]) == ("rows.csv", {"input": "Q: {{ q }}\n"})
    assert unsupported == [
        "providers[0].config.apiKey: not a request field (the gateway's config holds providers)",
        "defaultTest.assert[0]: not-llm-rubric: write the rubric the other way round",
        "tests: rows of file://rows.csv become a dataset (relative to the suite file); their __ columns "
        "(__expected, ...) are not converted",
    ]


def test_no_providers_or_prompts(tmp_path: Path) -> None:
    (tmp_path / "p.yaml").write_text(
        "prompts: [file://missing.txt, 3]\nproviders: [echo]\ntests: [{vars: {input: hi}}, {vars: [file://v.csv]}]\n"
    )
    text, unsupported = import_promptfoo(tmp_path / "p.yaml")
    suite = yaml.safe_load(text)
    assert suite["targets"] == ["CHANGE-ME"] and suite["cases"] == [
        {"id": "test-1", "input": "{{ input }}", "vars": {"input": "hi"}},
        {"id": "test-2", "input": "{{ input }}"},
    ]
    assert unsupported == [
        "providers[0]: provider echo has no equivalent: a target is a model or prompt of the gateway",
        "providers: no model provider to convert: set targets to your gateway's model names",
        "prompts[0]: prompt file://missing.txt is not a readable text or JSON chat file",
        "prompts[1]: unsupported prompt 3",
        "prompts: no prompt to convert: each case sends its vars' `input` (edit as needed)",
        "tests[1].vars: vars that are not a mapping of name: value are not converted",
    ]


@pytest.mark.parametrize(
    ("content", "message"),
    [("- a\n", "expected a promptfoo config"), ("prompts: [x]\nproviders: [m]\n", "no tests to convert"),
     ("a: [\n", "cannot read the promptfoo config")],
)  # fmt: skip
def test_not_a_promptfoo_config(tmp_path: Path, content: str, message: str) -> None:
    (tmp_path / "p.yaml").write_text(content)
    with pytest.raises(PromptfooError, match=message):
        import_promptfoo(tmp_path / "p.yaml")
    with pytest.raises(PromptfooError, match="cannot read"):
        import_promptfoo(tmp_path / "missing.yaml")


def test_the_import_command_writes_the_suite_and_lists_the_rest(
    converted: tuple[Path, str, list[str]], capsys: pytest.CaptureFixture[str]
) -> None:
    from gateway.cli import main

    folder, text, unsupported = converted
    assert (
        main(["eval", "import", "promptfoo", str(folder / "promptfooconfig.yaml"), "--out", str(folder / "s.yaml")])
        == 0
    )
    assert (folder / "s.yaml").read_text() == text
    err = capsys.readouterr().err
    assert err.startswith(f"not converted ({len(unsupported)}):\n") and unsupported[0] in err
    assert main(["eval", "import", "promptfoo", str(folder / "missing.yaml")]) == 2
    assert "cannot read the promptfoo config" in capsys.readouterr().err
