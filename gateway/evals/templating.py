"""`{{ var }}` in suite files: every string of a case's input, messages and assertions is rendered with the case's
variables when the suite loads, by the bounded Jinja2 sandbox prompts render in (gateway/prompts/sandbox.py).

A string without `{{`, `{%` or `{#` is returned as it is (no template is compiled for it); each distinct template is
compiled once, so a dataset of many rows pays for its template's compilation once. A variable's value is inserted as
it is and never rendered again. An undefined variable, a template that does not compile and a render past the
sandbox's bounds raise TemplateFailure naming the path inside the value and what went wrong.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from jinja2 import TemplateError, UndefinedError

from gateway.prompts.render import ENVIRONMENT, RENDER_ERRORS
from gateway.prompts.sandbox import RenderLimitError, new_budget, render_bounded

MAX_CHARS = 1_000_000  # what one string of a suite may render to
MARKERS = ("{{", "{%", "{#")


class TemplateFailure(ValueError):
    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}" if path else message)
        self.path = path  # inside the rendered value: "" for a string, ".content", "[0].text", ...
        self.message = message


@lru_cache(maxsize=1024)
def _compiled(source: str) -> Any:
    return ENVIRONMENT.from_string(source)


def render_text(source: str, variables: dict[str, Any]) -> str:
    if not any(marker in source for marker in MARKERS):
        return source
    try:
        template = _compiled(source)
    except TemplateError as exc:
        raise TemplateFailure("", f"invalid template: {exc}") from None
    try:
        return render_bounded(template, variables, new_budget(MAX_CHARS))
    except UndefinedError as exc:
        known = ", ".join(sorted(variables)) or "none"
        raise TemplateFailure("", f"{_undefined(exc)} (the case has: {known})") from None
    except RenderLimitError as exc:
        raise TemplateFailure("", f"went past a render limit: {exc}") from None
    except (TemplateError, *RENDER_ERRORS) as exc:
        raise TemplateFailure("", f"failed to render: {type(exc).__name__}: {exc}") from None


def render_tree(value: object, variables: dict[str, Any]) -> Any:
    """`value` with every string in it rendered (mappings' keys stay as written)."""
    if isinstance(value, str):
        return render_text(value, variables)
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            try:
                out[key] = render_tree(item, variables)
            except TemplateFailure as exc:
                raise TemplateFailure(f".{key}{exc.path}", exc.message) from None
        return out
    if isinstance(value, list):
        items = []
        for i, item in enumerate(value):
            try:
                items.append(render_tree(item, variables))
            except TemplateFailure as exc:
                raise TemplateFailure(f"[{i}]{exc.path}", exc.message) from None
        return items
    return value


def _undefined(exc: UndefinedError) -> str:
    text = str(exc)  # "'name' is undefined", or "'dict object' has no attribute 'x'"
    return f"variable {text}" if text.endswith(" is undefined") else text
