"""The Jinja2 sandbox prompt templates render in, and the bounds on what one render may cost.

Jinja2's ImmutableSandboxedEnvironment keeps templates away from Python internals; on top of it every render
gets a budget, so a template (written by a member key) cannot burn unbounded CPU or memory:
- steps: loop iterations plus calls (macros, `range`, `loop(...)` of recursive loops), at most MAX_STEPS, so
  `{% for i in range(n) %}{% for j in range(n) %}` fails within milliseconds instead of running for seconds;
- time: MAX_RENDER_S of the rendering thread's CPU time, checked every few steps (a backstop for costly steps);
- size: `*`, `+` and `~` build at most MAX_REPEAT items, a call (a macro) returns at most the render's character
  limit, and the output stops at that limit (the gateway's max_request_bytes);
- `range` yields at most MAX_RANGE items, and `**` takes an exponent of at most MAX_EXPONENT;
- no call or filter takes an integer argument over MAX_REPEAT, and no format (`%`, the `format` filter,
  `str.format`) a width or precision over it, so `{{ s|center(n) }}` or `{{ "%*s" % (n, s) }}` cannot allocate
  gigabytes before any check sees the result.
Loops are counted by wrapping each `{% for %}`'s iterable at parse time, so the cost is paid only by templates
that loop. A render starts on the event loop with a small share (INLINE_STEPS, INLINE_S): nearly every prompt
renders within it at no thread hop (~120 µs of CPU); one that outgrows it raises RenderDeferred and is rendered
again, from the start, in a worker thread with the full budget, so the event loop is never held longer.
"""

from __future__ import annotations

import functools
import operator
import re
import time
from collections.abc import Callable, Iterable, Iterator, Sized
from contextvars import ContextVar
from dataclasses import dataclass

from jinja2 import nodes
from jinja2.compiler import CodeGenerator, Frame
from jinja2.exceptions import TemplateError
from jinja2.runtime import Context
from jinja2.sandbox import ImmutableSandboxedEnvironment

MAX_STEPS = 100_000  # loop iterations plus calls in one render
MAX_RENDER_S = 0.25
INLINE_STEPS = 2_000  # the share of a render on the event loop; past it, the render starts over in a thread
INLINE_S = 0.002
TIME_CHECK_EVERY = 16
MAX_RANGE = 10_000  # items of one range()
MAX_REPEAT = 1_000_000  # items (characters) one `*`, `+` or `~` may build
MAX_EXPONENT = 1_000
FORMATS = frozenset({"format", "format_map"})


class RenderLimitError(TemplateError):
    """A render went past one of the bounds; the message names the limit."""


class RenderDeferred(TemplateError):
    """A render outgrew its share of the event loop: start it over in a worker thread."""


@dataclass(slots=True)
class Budget:
    """What one render may still spend. Time is the rendering thread's CPU time (a busy machine does not make a
    render fail), read every TIME_CHECK_EVERY steps (~1 us a read)."""

    steps: int
    deadline: float  # in time.thread_time()
    max_chars: int
    inline: bool  # on the event loop: past its share, defer rather than fail

    def spend(self) -> None:
        self.steps -= 1
        if self.steps < 0:
            if self.inline:
                raise RenderDeferred(f"more than {INLINE_STEPS} steps")
            raise RenderLimitError(f"more than {MAX_STEPS} loop iterations and calls")
        if self.steps % TIME_CHECK_EVERY == 0 and time.thread_time() > self.deadline:
            if self.inline:
                raise RenderDeferred(f"longer than {INLINE_S} s")
            raise RenderLimitError(f"rendering took longer than {MAX_RENDER_S} s")


_BUDGET: ContextVar[Budget | None] = ContextVar("prompt_render_budget", default=None)


def new_budget(max_chars: int, *, inline: bool = False) -> Budget:
    if inline:
        return Budget(INLINE_STEPS, time.thread_time() + INLINE_S, max_chars, inline=True)
    return Budget(MAX_STEPS, time.thread_time() + MAX_RENDER_S, max_chars, inline=False)


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


# The widths and precisions of %-formats (`%-12.3f`) and of str.format specs (`{0:>12.3}`).
_FORMAT_NUMBERS = re.compile(r"%[-#0 +]*(\d*)(?:\.(\d+))?|\{[^{}]*:[^{}\d]*(\d*)[,_]?(?:\.(\d+))?[^{}]*\}")


def _check_arguments(values: Iterable[object], what: str) -> None:
    for value in values:
        if isinstance(value, int) and abs(value) > MAX_REPEAT:
            raise RenderLimitError(f"{what} takes {value}, over the limit of {MAX_REPEAT}")


def _check_format(text: str) -> None:
    for match in _FORMAT_NUMBERS.finditer(text):
        _check_arguments((int(number) for number in match.groups() if number), "a format width")


def _bounded_filter(name: str, function: Callable[..., object]) -> Callable[..., object]:
    @functools.wraps(function)  # keeps Jinja2's pass_context/pass_environment marks
    def bounded(*args: object, **kwargs: object) -> object:
        _check_arguments((*args, *kwargs.values()), f"filter {name}")
        if name == "format" and args and isinstance(args[0], str):
            _check_format(args[0])
        return function(*args, **kwargs)

    return bounded


class _Generator(CodeGenerator):
    def visit_Concat(self, node: nodes.Concat, frame: Frame) -> None:
        self.write("environment.bounded_concat((")  # instead of str_join: `~` builds a bounded string
        for arg in node.nodes:
            self.visit(arg, frame)
            self.write(", ")
        self.write("))")


class Sandbox(ImmutableSandboxedEnvironment):
    """Jinja2's immutable sandbox with the bounds above (intercepting `*`, `**`, `+` also stops constant folding)."""

    intercepted_binops = frozenset({"*", "**", "+", "%"})
    code_generator_class = _Generator

    def __init__(self, **options: object) -> None:
        super().__init__(**options)  # type: ignore[arg-type]
        self.globals["range"] = bounded_range
        self.filters = {name: _bounded_filter(name, function) for name, function in self.filters.items()}

    def _parse(self, source: str, name: str | None, filename: str | None) -> nodes.Template:
        tree = super()._parse(source, name, filename)
        for loop in list(tree.find_all(nodes.For)):
            loop.iter = nodes.Call(
                nodes.ImportedName(f"{__name__}.counted"), [loop.iter], [], None, None, lineno=loop.lineno
            )
        return tree

    def call(__self, __context: Context, __obj: object, *args: object, **kwargs: object) -> object:  # noqa: N805
        budget = _spend()
        _check_arguments((*args, *kwargs.values()), "a call")
        method = getattr(__obj, "__wrapped__", __obj)  # the sandbox wraps str.format in a safe formatter
        if isinstance(getattr(method, "__self__", None), str) and getattr(method, "__name__", "") in FORMATS:
            _check_format(method.__self__)
        result = super().call(__context, __obj, *args, **kwargs)
        if budget is not None and isinstance(result, str) and len(result) > budget.max_chars:
            raise RenderLimitError(f"a call returned {len(result)} characters, over the limit of {budget.max_chars}")
        return result

    def call_binop(self, context: Context, operator_: str, left: object, right: object) -> object:
        if operator_ == "**":
            if isinstance(right, int | float) and abs(right) > MAX_EXPONENT:
                raise RenderLimitError(f"exponent {right} is over the limit of {MAX_EXPONENT}")
            return operator.pow(left, right)  # type: ignore[call-overload]
        if operator_ == "%":
            if isinstance(left, str):
                _check_format(left)
                _check_arguments(right if isinstance(right, tuple) else (right,), "a % format")
            return operator.mod(left, right)  # type: ignore[operator]
        if operator_ == "+":
            if isinstance(left, Sized) and isinstance(right, Sized):
                _check_size(len(left) + len(right), "`+`")
            return operator.add(left, right)  # type: ignore[operator]
        for seq, times in ((left, right), (right, left)):
            if isinstance(seq, Sized) and not isinstance(seq, int) and isinstance(times, int):
                _check_size(len(seq) * times, f"repeating {len(seq)} items {times} times")
        return operator.mul(left, right)  # type: ignore[operator]

    def bounded_concat(self, parts: tuple[object, ...]) -> str:
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
