"""The Jinja2 sandbox prompt templates render in, and the bounds on what one render may cost.

Jinja2's ImmutableSandboxedEnvironment keeps templates away from Python internals; on top of it every render
gets a budget, so a template (written by a member key) cannot burn unbounded CPU or memory:
- steps: loop iterations plus calls (macros, `range`, `loop(...)` of recursive loops), at most MAX_STEPS, so
  `{% for i in range(n) %}{% for j in range(n) %}` fails within milliseconds instead of running for seconds;
- time: MAX_RENDER_S of wall time, checked at every step (a backstop for costly steps);
- size: `*`, `+` and `~` build at most MAX_REPEAT items, a call (a macro) returns at most the render's character
  limit, and the output stops at that limit (the gateway's max_request_bytes);
- `range` yields at most MAX_RANGE items, and `**` takes an exponent of at most MAX_EXPONENT.
Loops are counted by wrapping each `{% for %}`'s iterable at parse time, so the cost is paid only by templates
that loop. `is_costly` tells, at compile time, whether a template can take long at all (so it renders off the
event loop).
"""

from __future__ import annotations

import operator
import time
from collections.abc import Iterable, Iterator, Sized
from contextvars import ContextVar
from dataclasses import dataclass

from jinja2 import nodes
from jinja2.compiler import CodeGenerator, Frame
from jinja2.exceptions import TemplateError
from jinja2.runtime import Context
from jinja2.sandbox import ImmutableSandboxedEnvironment

MAX_STEPS = 100_000  # loop iterations plus calls in one render
MAX_RENDER_S = 0.25
MAX_RANGE = 10_000  # items of one range()
MAX_REPEAT = 1_000_000  # items (characters) one `*`, `+` or `~` may build
MAX_EXPONENT = 1_000
COSTLY_NODES = (nodes.For, nodes.Macro, nodes.CallBlock, nodes.Mul, nodes.Pow, nodes.FilterBlock)


class RenderLimitError(TemplateError):
    """A render went past one of the bounds; the message names the limit."""


@dataclass(slots=True)
class Budget:
    steps: int
    deadline: float
    max_chars: int

    def spend(self) -> None:
        self.steps -= 1
        if self.steps < 0:
            raise RenderLimitError(f"more than {MAX_STEPS} loop iterations and calls")
        if time.perf_counter() > self.deadline:
            raise RenderLimitError(f"rendering took longer than {MAX_RENDER_S} s")


_BUDGET: ContextVar[Budget | None] = ContextVar("prompt_render_budget", default=None)


def new_budget(max_chars: int) -> Budget:
    return Budget(MAX_STEPS, time.perf_counter() + MAX_RENDER_S, max_chars)


def _spend() -> Budget | None:
    budget = _BUDGET.get()
    if budget is not None:
        budget.spend()
    return budget


def counted(iterable: Iterable[object]) -> Iterator[object]:
    """A `{% for %}` loop's iterable: each iteration is a step."""
    for item in iterable:
        _spend()
        yield item


def bounded_range(*args: int) -> range:
    items = range(*args)
    if len(items) > MAX_RANGE:
        raise RenderLimitError(f"range() of {len(items)} items is over the limit of {MAX_RANGE}")
    return items


def _check_size(size: int, what: str) -> None:
    if size > MAX_REPEAT:
        raise RenderLimitError(f"{what} would build {size} items, over the limit of {MAX_REPEAT}")


class _Generator(CodeGenerator):
    def visit_Concat(self, node: nodes.Concat, frame: Frame) -> None:
        self.write("environment.concat((")  # instead of str_join: `~` builds a bounded string
        for arg in node.nodes:
            self.visit(arg, frame)
            self.write(", ")
        self.write("))")


class Sandbox(ImmutableSandboxedEnvironment):
    """Jinja2's immutable sandbox with the bounds above (intercepting `*`, `**`, `+` also stops constant folding)."""

    intercepted_binops = frozenset({"*", "**", "+"})
    code_generator_class = _Generator

    def __init__(self, **options: object) -> None:
        super().__init__(**options)  # type: ignore[arg-type]
        self.globals["range"] = bounded_range

    def _parse(self, source: str, name: str | None, filename: str | None) -> nodes.Template:
        tree = super()._parse(source, name, filename)
        for loop in list(tree.find_all(nodes.For)):
            loop.iter = nodes.Call(
                nodes.ImportedName(f"{__name__}.counted"), [loop.iter], [], None, None, lineno=loop.lineno
            )
        return tree

    def call(__self, __context: Context, __obj: object, *args: object, **kwargs: object) -> object:  # noqa: N805
        budget = _spend()
        result = super().call(__context, __obj, *args, **kwargs)
        if budget is not None and isinstance(result, str) and len(result) > budget.max_chars:
            raise RenderLimitError(f"a call returned {len(result)} characters, over the limit of {budget.max_chars}")
        return result

    def call_binop(self, context: Context, operator_: str, left: object, right: object) -> object:
        if operator_ == "**":
            if isinstance(right, int | float) and abs(right) > MAX_EXPONENT:
                raise RenderLimitError(f"exponent {right} is over the limit of {MAX_EXPONENT}")
            return operator.pow(left, right)  # type: ignore[call-overload]
        if operator_ == "+":
            if isinstance(left, Sized) and isinstance(right, Sized):
                _check_size(len(left) + len(right), "`+`")
            return operator.add(left, right)  # type: ignore[operator]
        for seq, times in ((left, right), (right, left)):
            if isinstance(seq, Sized) and not isinstance(seq, int) and isinstance(times, int):
                _check_size(len(seq) * times, f"repeating {len(seq)} items {times} times")
        return operator.mul(left, right)  # type: ignore[operator]

    def concat(self, parts: tuple[object, ...]) -> str:
        strings = [str(part) for part in parts]
        _check_size(sum(map(len, strings)), "`~`")
        return "".join(strings)


def render_bounded(template: object, values: dict[str, object], budget: Budget) -> str:
    """Renders `template` within `budget`, stopping as soon as its output passes budget.max_chars."""
    token = _BUDGET.set(budget)  # what every step of this render spends from (per thread, per task)
    try:
        chunks: list[str] = []
        size = 0
        for chunk in template.generate(values):  # type: ignore[attr-defined]
            size += len(chunk)
            if size > budget.max_chars:
                raise RenderLimitError(f"the output passed the limit of {budget.max_chars} characters")
            chunks.append(chunk)
        return "".join(chunks)
    finally:
        _BUDGET.reset(token)


def is_costly(tree: nodes.Template) -> bool:
    """Whether a template can take long to render: it loops, defines macros, calls a name (a macro, `range`) or
    repeats (`*`, `**`). Methods of values (`{{ name.upper() }}`) and filters take time linear in the values."""
    if any(True for _ in tree.find_all(COSTLY_NODES)):
        return True
    return any(isinstance(call.node, nodes.Name) for call in tree.find_all(nodes.Call))
