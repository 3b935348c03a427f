"""Rendering prompt templates: sandboxed Jinja2, strict variables, values inserted as plain text.

The environment is Jinja2's ImmutableSandboxedEnvironment: templates cannot reach Python internals
(`{{ ''.__class__ }}` fails) or mutate values. Undefined variables raise instead of rendering as ''.
Autoescaping is off: chat text is not HTML. A variable's value is inserted as it is and never rendered
again, so a value holding `{{ ... }}` stays literal text. The variables a version takes are the ones its
templates reference; a call must give exactly those (a missing or an extra one is a 400 naming it).
Every render runs within the bounds of sandbox.py (steps, time, size); one past them is a 400 naming the limit.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from jinja2 import ChainableUndefined, StrictUndefined, TemplateError, UndefinedError, meta
from jinja2.exceptions import SecurityError

from gateway.errors import InvalidRequest
from gateway.prompts.sandbox import RenderDeferred, RenderLimitError, Sandbox, new_budget, render_bounded
from gateway.prompts.spec import PromptSpec

# What a template may raise on the values a call gives besides TemplateError ({{ 1 / n }}, {{ n + "a" }}): a 400.
RENDER_ERRORS = (ArithmeticError, TypeError, ValueError, LookupError, RecursionError)
TRIAL_MAX_CHARS = 1_000_000  # output of the trial render at creation, on placeholder values

ENVIRONMENT = Sandbox(undefined=StrictUndefined, autoescape=False, keep_trailing_newline=True)


class _Probe(ChainableUndefined):
    """For the check at creation: any variable (and any attribute of it) renders as empty, so what fails is the
    template itself; reaching past the sandbox fails at once instead of rendering as empty."""

    __slots__ = ()

    def __init__(self, hint: str | None = None, obj: object = None, name: str | None = None,
                 exc: type[TemplateError] = UndefinedError) -> None:  # fmt: skip
        if issubclass(exc, SecurityError):
            raise SecurityError(hint or "unsafe access")
        super().__init__(hint, obj, name, exc)  # type: ignore[arg-type]

    def __call__(self, *args: object, **kwargs: object) -> _Probe:
        return self  # a method of a variable (`{{ name.upper() }}`, `data.items()`) is fine to call


_LENIENT = Sandbox(undefined=_Probe, autoescape=False)


class TemplateInvalid(ValueError):
    """A template that does not compile, or fails on sample values (e.g. it reaches into the sandbox)."""


@dataclass(frozen=True, slots=True)
class CompiledPrompt:
    prompt_id: str
    version: int
    spec: PromptSpec
    templates: tuple[tuple[str, object], ...]  # (role, compiled template)
    variables: frozenset[str]

    def render(self, values: Mapping[str, object], *, max_chars: int, inline: bool = False) -> list[dict[str, object]]:
        """The messages with `values` filled in, at most `max_chars` characters in all. Raises InvalidRequest
        (400) naming a missing or extra variable, a render failure, or the limit a render went past; `inline`
        (on the event loop), RenderDeferred when the render outgrows the loop's share (render it again in a
        worker thread)."""
        self._check_variables(set(values))
        budget = new_budget(max_chars, inline=inline)
        try:
            return [
                {"role": role, "content": render_bounded(template, dict(values), budget)}
                for role, template in self.templates
            ]
        except RenderDeferred:
            raise
        except RenderLimitError as exc:
            raise InvalidRequest(
                f"Prompt {self.prompt_id!r} version {self.version} went past a render limit: {exc}.",
                param="prompt",
                code="prompt_render_limit",
            ) from None
        except (TemplateError, *RENDER_ERRORS) as exc:
            raise InvalidRequest(
                f"Prompt {self.prompt_id!r} version {self.version} failed to render: {type(exc).__name__}: {exc}",
                param="prompt.variables",
                code="prompt_render_failed",
            ) from None

    def _check_variables(self, given: set[str]) -> None:
        missing = sorted(self.variables - given)
        if missing:
            raise InvalidRequest(
                f"Prompt {self.prompt_id!r} version {self.version} needs variable {missing[0]!r} "
                f"(it takes: {', '.join(sorted(self.variables)) or 'none'}).",
                param=f"prompt.variables.{missing[0]}",
                code="missing_variable",
            )
        extra = sorted(given - self.variables)
        if extra:
            raise InvalidRequest(
                f"Prompt {self.prompt_id!r} version {self.version} has no variable {extra[0]!r} "
                f"(it takes: {', '.join(sorted(self.variables)) or 'none'}).",
                param=f"prompt.variables.{extra[0]}",
                code="unknown_variable",
            )


def compile_prompt(spec: PromptSpec, version: int) -> CompiledPrompt:
    """Compiles every message template; raises TemplateInvalid naming the message."""
    templates = []
    variables: set[str] = set()
    for i, message in enumerate(spec.messages):
        try:
            variables |= meta.find_undeclared_variables(ENVIRONMENT.parse(message.content))
            templates.append((message.role, ENVIRONMENT.from_string(message.content)))
        except TemplateError as exc:
            raise TemplateInvalid(f"messages[{i}].content: invalid template: {exc}") from None
    return CompiledPrompt(spec.id, version, spec, tuple(templates), frozenset(variables))


def check_templates(spec: PromptSpec) -> frozenset[str]:
    """At creation: the templates compile, and a trial render with placeholder values neither reaches past the
    sandbox nor goes past a render limit (`{% for i in range(5000) %}{% for j in range(5000) %}` is refused
    here). Returns the variables. Other trial failures (`{{ n * 3 }}` on a placeholder) are left to the values
    a call gives; the sandbox and the bounds still hold at every render."""
    compiled = compile_prompt(spec, 0)
    for i, message in enumerate(spec.messages):
        try:
            render_bounded(_LENIENT.from_string(message.content), {}, new_budget(TRIAL_MAX_CHARS))
        except (SecurityError, RenderLimitError) as exc:
            raise TemplateInvalid(f"messages[{i}].content: {type(exc).__name__}: {exc}") from None
        except (TemplateError, *RENDER_ERRORS):
            pass
    return compiled.variables
