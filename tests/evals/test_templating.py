"""`{{ var }}` in suite strings: rendered with the case's variables in the bounded sandbox; failures name the path."""

from __future__ import annotations

import pytest

from gateway.evals.templating import TemplateFailure, render_text, render_tree

MAX_CHARS = 1_000_000  # what one string of a suite may render to


def test_strings_and_trees_render_with_the_variables() -> None:
    assert render_text("Hi {{ who }}{% if loud %}!{% endif %}{# note #}", {"who": "Ada", "loud": True}) == "Hi Ada!"
    assert render_text("a\r\nb {x}", {}) == "a\r\nb {x}"  # no template in it: returned as it is
    tree = {"k": ["{{ n + 1 }}", {"deep": "{{ s }}"}, 3, None], "{{ key }}": "v"}
    assert render_tree(tree, {"n": 1, "s": "{{ n }}"}) == {"k": ["2", {"deep": "{{ n }}"}, 3, None], "{{ key }}": "v"}


@pytest.mark.parametrize(
    ("value", "variables", "path", "message"),
    [
        ("{{ x }}", {"b": 1, "a": 2}, "", "variable 'x' is undefined (the case has: a, b)"),
        ("{{ x }}", {}, "", "variable 'x' is undefined (the case has: none)"),
        ({"a": [1, {"b": "{{ y.z }}"}]}, {"y": {}}, ".a[1].b", "'dict object' has no attribute 'z' (the case has: y)"),
        ("{{ 1 / n }}", {"n": 0}, "", "failed to render: ZeroDivisionError: division by zero"),
        ("{% for %}", {}, "", "invalid template: Expected an expression, got 'end of statement block'"),
        ("{{ a }}{{ b }}", {"a": "x" * (MAX_CHARS - 1), "b": "xx"}, "",
         f"went past a render limit: the output passed the limit of {MAX_CHARS} characters"),
    ],
)  # fmt: skip
def test_a_failure_names_the_path_and_what_went_wrong(value: object, variables: dict[str, object], path: str,
                                                      message: str) -> None:  # fmt: skip
    with pytest.raises(TemplateFailure) as caught:
        render_tree(value, variables)
    assert (caught.value.path, caught.value.message) == (path, message)
    assert str(caught.value) == (f"{path}: {message}" if path else message)


def test_the_output_may_reach_the_limit() -> None:
    assert len(render_text("{{ a }}{{ b }}", {"a": "x" * (MAX_CHARS - 1), "b": "x"})) == MAX_CHARS
