"""Rendering prompt templates: sandboxed Jinja2, strict variables, values inserted as plain text.

The environment is Jinja2's ImmutableSandboxedEnvironment: templates cannot reach Python internals
(`{{ ''.__class__ }}` fails) or mutate values. Undefined variables raise instead of rendering as ''.
Autoescaping is off: chat text is not HTML. A variable's value is inserted as it is and never rendered
again, so a value holding `{{ ... }}` stays literal text. The variables a version takes are the ones its
templates reference; a call must give exactly those (a missing or an extra one is a 400 naming it).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from jinja2 import ChainableUndefined, StrictUndefined, TemplateError, UndefinedError, meta
from jinja2.exceptions import SecurityError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from gateway.errors import InvalidRequest
from gateway.prompts.spec import PromptSpec

ENVIRONMENT = ImmutableSandboxedEnvironment(undefined=StrictUndefined, autoescape=False, keep_trailing_newline=True)


class _Probe(ChainableUndefined):
    """For the check at creation: any variable (and any attribute of it) renders as empty, so what fails is the
    template itself; reaching past the sandbox fails at once instead of rendering as empty."""

    __slots__ = ()

    def __init__(self, hint: str | None = None, obj: object = None, name: str | None = None,
                 exc: type[TemplateError] = UndefinedError) -> None:  # fmt: skip
        if issubclass(exc, SecurityError):
            raise SecurityError(hint or "unsafe access")
        super().__init__(hint, obj, name, exc)  # type: ignore[arg-type]


_LENIENT = ImmutableSandboxedEnvironment(undefined=_Probe, autoescape=False)


class TemplateInvalid(ValueError):
    """A template that does not compile, or fails on sample values (e.g. it reaches into the sandbox)."""


@dataclass(frozen=True, slots=True)
class CompiledPrompt:
    prompt_id: str
    version: int
    spec: PromptSpec
    templates: tuple[tuple[str, object], ...]  # (role, compiled template)
    variables: frozenset[str]

    def render(self, values: Mapping[str, object]) -> list[dict[str, object]]:
        """The messages with `values` filled in; raises InvalidRequest (400) naming a missing or extra variable."""
        given = set(values)
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
        try:
            return [{"role": role, "content": template.render(values)} for role, template in self.templates]  # type: ignore[attr-defined]
        except TemplateError as exc:
            raise InvalidRequest(
                f"Prompt {self.prompt_id!r} version {self.version} failed to render: {exc}",
                param="prompt.variables",
                code="prompt_render_failed",
            ) from None


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
    """At creation: the templates compile and render with sample values inside the sandbox. Returns the variables."""
    compiled = compile_prompt(spec, 0)
    for i, message in enumerate(spec.messages):
        try:
            _LENIENT.from_string(message.content).render()
        except TemplateError as exc:  # SecurityError is one: a template reaching past the sandbox
            raise TemplateInvalid(f"messages[{i}].content: {type(exc).__name__}: {exc}") from None
    return compiled.variables
