"""Rendering and validating prompt versions: variables, escaping, the sandbox, the shipped example files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from gateway.errors import InvalidRequest
from gateway.prompts.render import TemplateInvalid, check_templates, compile_prompt
from gateway.prompts.sandbox import INLINE_STEPS, RenderDeferred
from gateway.prompts.spec import SCHEMA_PATH, PromptSpec, check_label, prompt_schema

REPO = Path(__file__).resolve().parents[2]
LIMIT = 16 * 1024 * 1024  # characters a render may produce (the default max_request_bytes)


def spec(*contents: str, **extra: object) -> PromptSpec:
    return PromptSpec.model_validate(
        {"id": "p", "messages": [{"role": "system", "content": c} for c in contents], **extra}
    )


def test_variables_are_the_ones_the_templates_reference() -> None:
    prompt = compile_prompt(spec("Hi {{ name }}", "{% for q in queues %}{{ q.title }}{% endfor %} {{ tier }}"), 1)
    assert prompt.variables == {"name", "queues", "tier"}
    rendered = prompt.render(
        max_chars=LIMIT, values={"name": "Ann", "queues": [{"title": "a"}, {"title": "b"}], "tier": "pro"}
    )
    assert rendered == [{"role": "system", "content": "Hi Ann"}, {"role": "system", "content": "ab pro"}]


def test_values_are_inserted_as_text_and_never_rendered_again() -> None:
    prompt = compile_prompt(spec("Customer said: {{ text }}"), 1)
    hostile = "{{ 7 * 7 }} {% raw %}<b>&amp;</b> {{ ''.__class__ }}"
    assert (
        prompt.render(max_chars=LIMIT, values={"text": hostile})[0]["content"] == f"Customer said: {hostile}"
    )  # no HTML escaping either


@pytest.mark.parametrize(
    ("values", "param", "code"),
    [
        ({"name": "a"}, "prompt.variables.tier", "missing_variable"),
        ({"name": "a", "tier": "b", "colour": "c"}, "prompt.variables.colour", "unknown_variable"),
    ],
)
def test_missing_and_extra_variables_are_400s_naming_them(values: dict[str, object], param: str, code: str) -> None:
    prompt = compile_prompt(spec("{{ name }} {{ tier }}"), 3)
    with pytest.raises(InvalidRequest) as raised:
        prompt.render(values, max_chars=LIMIT)
    assert raised.value.param == param and raised.value.code == code
    assert "version 3" in raised.value.message and param.rsplit(".", 1)[1] in raised.value.message


def test_attribute_missing_on_a_given_value_is_a_400_not_a_500() -> None:
    prompt = compile_prompt(spec("{{ user.name }}"), 1)
    with pytest.raises(InvalidRequest) as raised:
        prompt.render(max_chars=LIMIT, values={"user": "just a string"})
    assert raised.value.code == "prompt_render_failed"


@pytest.mark.parametrize(
    "template",
    [
        "{{ ''.__class__.__mro__ }}",
        "{{ cycler.__init__.__globals__ }}",
        "{{ x.__class__ }}",
        "{{ lipsum.__globals__ }}",
    ],
)
def test_templates_reaching_past_the_sandbox_are_refused_at_creation(template: str) -> None:
    with pytest.raises(TemplateInvalid, match="SecurityError"):
        check_templates(spec(template))


def test_a_template_that_does_not_compile_names_its_message() -> None:
    with pytest.raises(TemplateInvalid, match=r"messages\[1\].content: invalid template"):
        check_templates(spec("fine", "{% if %}"))


def test_spec_rules() -> None:
    with pytest.raises(ValidationError, match="params may not set messages, stream"):
        spec("x", params={"messages": [], "stream": True})
    with pytest.raises(ValidationError, match="id"):
        PromptSpec.model_validate({"id": "Bad Id", "messages": [{"role": "system", "content": "x"}]})
    with pytest.raises(ValueError, match="cannot be moved"):
        check_label("latest")
    assert spec("x", commit_message="a").content_sha256() == spec("x", commit_message="b").content_sha256()
    assert spec("x").content_sha256() != spec("y").content_sha256()


@pytest.mark.parametrize("path", sorted((REPO / "prompts").glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_prompt_files_are_valid(path: Path) -> None:
    loaded = PromptSpec.model_validate(yaml.safe_load(path.read_text()))
    assert loaded.id == path.stem
    assert check_templates(loaded)


@pytest.mark.parametrize(
    "template",
    [
        "{{ name.upper() }}",
        "{% for k, v in data.items() %}{{ k }}={{ v }}{% endfor %}",
        "{% if amount > 100 %}large{% endif %} {{ amount * 2 }}",
        "{{ items | join(', ') }} {{ '-' * 20 }}",
    ],
)
def test_ordinary_templates_are_accepted_at_creation(template: str) -> None:
    assert check_templates(spec(template))


def test_a_callers_value_cannot_make_a_template_build_gigabytes() -> None:
    prompt = compile_prompt(spec("{{ 'ab' * n }} {{ 2 ** e }}"), 1)
    assert prompt.render(max_chars=LIMIT, values={"n": 3, "e": 10})[0]["content"] == "ababab 1024"
    for values in ({"n": 10**9, "e": 1}, {"n": 1, "e": 10**9}):
        with pytest.raises(InvalidRequest, match="over the limit") as raised:
            prompt.render(values, max_chars=LIMIT)
        assert raised.value.code == "prompt_render_limit"


@pytest.mark.parametrize(
    ("template", "values"),
    [
        ("{{ 1 / n }}", {"n": 0}),
        ("{{ n + 'a' }}", {"n": 1}),
        ("{{ items.append(1) }}", {"items": [1]}),  # the sandbox is immutable: values cannot be changed
        ("{{ (n * 3).__class__ }}", {"n": 1}),  # passes the trial at creation; the sandbox still holds
    ],
)
def test_a_render_failure_on_the_callers_values_is_a_400(template: str, values: dict[str, object]) -> None:
    prompt = compile_prompt(spec(template), 1)
    with pytest.raises(InvalidRequest) as raised:
        prompt.render(values, max_chars=LIMIT)
    assert raised.value.code == "prompt_render_failed" and raised.value.param == "prompt.variables"


def test_the_committed_schema_is_the_generated_one() -> None:
    assert json.loads(SCHEMA_PATH.read_text()) == prompt_schema(), "run: python -m gateway.prompts.spec"
    for path in sorted((REPO / "prompts").glob("*.yaml")):
        assert path.read_text().startswith("# yaml-language-server: $schema=schema.json\n"), path.name


def test_the_readmes_prompt_file_is_valid() -> None:
    section = (REPO / "README.md").read_text().split("## Prompt registry", 1)[1]
    example = section.split("```yaml\n", 1)[1].split("```", 1)[0]
    loaded = PromptSpec.model_validate(yaml.safe_load(example))
    assert loaded.id == "support-triage" and check_templates(loaded) == {"product", "queues", "tier"}


@pytest.mark.parametrize(
    ("template", "values", "limit"),
    [
        ("{% for a in s %}{% for b in s %}{% endfor %}{% endfor %}", {"s": "x" * 1000}, "more than 100000 loop"),
        ("{% macro f(k) %}{% if k %}{{ f(k - 1) }}{{ f(k - 1) }}{% endif %}{% endmacro %}{{ f(n) }}", {"n": 40},
         "longer than 0.25 s"),
        ("{{ s ~ s }}", {"s": "x" * 600_000}, "`~` would build 1200000 items"),
        ("{{ s + s }}", {"s": "x" * 600_000}, "`+` would build 1200000 items"),
        ("{{ range(n) | length }}", {"n": 10_001}, "range() of 10001 items is over the limit of 10000"),
        ("{% macro m() %}{{ s }}{{ s }}{% endmacro %}{{ m() }}", {"s": "x" * 600}, "a call returned 1200 characters"),
        ("{{ s | center(n) }}", {"s": "x", "n": 10**9}, "filter center takes 1000000000"),
        ("{{ s.ljust(n) }}", {"s": "x", "n": 10**9}, "a call takes 1000000000"),
        ("{{ '%*s' % (n, s) }}", {"s": "x", "n": 10**9}, "a % format takes 1000000000"),
        ("{{ '%1000000000s' % s }}", {"s": "x"}, "a format width takes 1000000000"),
        ("{{ '%.2000000f' | format(1.5) }}", {}, "a format width takes 2000000"),
        ("{{ '{:>1000000000}'.format(s) }}", {"s": "x"}, "a format width takes 1000000000"),
    ],
)  # fmt: skip
def test_a_render_past_a_bound_is_a_400_naming_the_limit(template: str, values: dict[str, object], limit: str) -> None:
    """Each of these stops before it allocates: center(10**9) would build a gigabyte string."""
    prompt = compile_prompt(spec(template), 2)
    with pytest.raises(InvalidRequest) as raised:
        prompt.render(values, max_chars=1000)
    assert raised.value.code == "prompt_render_limit" and raised.value.param == "prompt"
    assert raised.value.message.startswith("Prompt 'p' version 2 went past a render limit")
    assert limit in raised.value.message


def test_a_render_outgrowing_the_event_loops_share_is_deferred_not_refused() -> None:
    """On the event loop a render gets INLINE_STEPS; past them the hook renders it again in a worker thread."""
    prompt = compile_prompt(spec("{% for i in range(n) %}.{% endfor %}"), 1)
    assert prompt.render({"n": 100}, max_chars=LIMIT, inline=True)[0]["content"] == "." * 100
    with pytest.raises(RenderDeferred):
        prompt.render({"n": INLINE_STEPS + 1}, max_chars=LIMIT, inline=True)
    assert prompt.render({"n": INLINE_STEPS + 1}, max_chars=LIMIT)[0]["content"] == "." * (INLINE_STEPS + 1)
