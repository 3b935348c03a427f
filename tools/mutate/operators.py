"""The mutation operators: where a module's source can be changed, each change named by a stable id.

A mutant's id is `qualname|operator|original -> mutated|k`: the enclosing function, what the operator did, the
source snippet before and after, and k counting identical changes in the same function. Unrelated edits elsewhere
in the module leave it unchanged, so `equivalent.yaml` can list mutants by id.

Operators (the classic ones): `cmp` flips a comparison at its boundary or negates it (`<` `<=`, `==` `!=`,
`in` `not in`, `is` `is not`); `num` adds and subtracts 1 on an int (adds 1 on a float); `bool` swaps `and`/`or`
and `True`/`False`; `not` drops a `not` and negates an `if`/`while` test; `arith` swaps `+`/`-` and `*`/`/`;
`del` replaces a statement inside a function by `pass`; `str` wraps a string literal inside a function in `XX`.
Never mutated: docstrings, annotations, `if TYPE_CHECKING:` blocks, logging calls' arguments, and lines carrying
`# pragma: no mutate`.
"""

from __future__ import annotations

import ast
import copy
from collections.abc import Callable, Iterator
from dataclasses import dataclass

_CMP = {
    ast.Lt: ast.LtE,
    ast.LtE: ast.Lt,
    ast.Gt: ast.GtE,
    ast.GtE: ast.Gt,
    ast.Eq: ast.NotEq,
    ast.NotEq: ast.Eq,
    ast.In: ast.NotIn,
    ast.NotIn: ast.In,
    ast.Is: ast.IsNot,
    ast.IsNot: ast.Is,
}
_ARITH = {ast.Add: ast.Sub, ast.Sub: ast.Add, ast.Mult: ast.Div, ast.Div: ast.Mult, ast.FloorDiv: ast.Mult}
_DELETABLE = (ast.Expr, ast.Assign, ast.AugAssign, ast.AnnAssign, ast.Return, ast.Raise, ast.Delete)
_DELETABLE += (ast.Continue, ast.Break)
_LOG_METHODS = {"debug", "info", "warning", "error", "exception", "critical", "log"}
_SNIPPET = 60


@dataclass(frozen=True)
class Mutant:
    index: int  # position in this module's enumeration (stable only for one version of the source)
    id: str
    line: int
    operator: str
    original: str
    mutated: str
    function: str | None  # the top-level function or method whose code alone changes; None: module-level effect


@dataclass
class _Site:
    qualname: str
    operator: str
    line: int
    original: str
    mutated: str
    apply: Callable[[], None]
    function: str | None = None


def list_mutants(source: str) -> list[Mutant]:
    """Every mutant of `source`, in a fixed order."""
    mutants: list[Mutant] = []
    seen: dict[tuple[str, str, str, str], int] = {}
    for index, site in enumerate(_sites(ast.parse(source), source)):
        key = (site.qualname, site.operator, site.original, site.mutated)
        k = seen.get(key, 0)
        seen[key] = k + 1
        mutant_id = f"{site.qualname}|{site.operator}|{site.original} -> {site.mutated}|{k}"
        mutants.append(Mutant(index, mutant_id, site.line, site.operator, site.original, site.mutated, site.function))
    return mutants


def mutated_tree(source: str, index: int) -> ast.Module:
    """The module's AST with mutant `index` applied."""
    tree = ast.parse(source)
    for i, site in enumerate(_sites(tree, source)):
        if i == index:
            site.apply()
            return ast.fix_missing_locations(tree)
    raise IndexError(f"no mutant {index}")


def _short(node: ast.AST) -> str:
    text = " ".join(ast.unparse(node).split())
    return text if len(text) <= _SNIPPET else text[: _SNIPPET - 3] + "..."


def _sites(tree: ast.Module, source: str) -> Iterator[_Site]:
    skipped = {n for n, line in enumerate(source.splitlines(), 1) if "pragma: no mutate" in line}
    yield from _Walker(skipped, _called_at_import(tree)).walk(tree, "<module>", in_function=False)


def _called_at_import(tree: ast.Module) -> set[str]:
    """Names called while the module is imported (module and class bodies, defaults, decorators): their results
    already exist when the tests start, so a mutant inside them must reload the module."""
    called: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            for part in [*getattr(node, "decorator_list", []), *node.args.defaults, *node.args.kw_defaults]:
                if part is not None:
                    visit(part)
            return
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            called.add(node.func.id)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return called


def _is_docstring(stmt: ast.stmt) -> bool:
    return isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant) and isinstance(stmt.value.value, str)


def _is_log_call(node: ast.AST) -> bool:
    return (
        (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in _LOG_METHODS)
        and isinstance(node.func.value, ast.Name | ast.Attribute)
        and "log" in ast.unparse(node.func.value).lower()
    )


def _is_ellipsis(stmt: ast.Expr) -> bool:  # a Protocol's or a stub's body: deleting it changes nothing
    return isinstance(stmt.value, ast.Constant) and stmt.value.value is Ellipsis


def _is_not(node: ast.AST) -> bool:
    return isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not)


def _is_type_checking(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)


class _Walker:
    def __init__(self, skipped_lines: set[int], import_time: set[str]) -> None:
        self.skipped = skipped_lines
        self.import_time = import_time
        self.function: str | None = None  # set while inside the body of a top-level function or method

    def walk(self, node: ast.AST, qualname: str, *, in_function: bool) -> Iterator[_Site]:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            qualname = node.name if qualname == "<module>" else f"{qualname}.{node.name}"
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                yield from self._function(node, qualname, nested=in_function)
                return
        if _is_type_checking(node) or _is_log_call(node):
            return
        if getattr(node, "lineno", None) not in self.skipped:
            for site in self._here(node, qualname, in_function):
                site.function = self.function
                yield site
        yield from self._children(node, qualname, in_function=in_function)

    def _function(
        self, node: ast.FunctionDef | ast.AsyncFunctionDef, qualname: str, *, nested: bool
    ) -> Iterator[_Site]:
        """Defaults run where the function is defined, the body when called: only a top-level function's or a
        method's body changes nothing but that function's code (a nested one's closures may already exist)."""
        outer = self.function
        self.function = None
        yield from self.walk(node.args, qualname, in_function=nested)
        self.function = None if nested or qualname.split(".")[0] in self.import_time else qualname
        body = ast.Module(body=node.body, type_ignores=[])
        yield from self._children(body, qualname, in_function=True)
        self.function = outer

    def _children(self, node: ast.AST, qualname: str, *, in_function: bool) -> Iterator[_Site]:
        for field, value in ast.iter_fields(node):
            if field in ("annotation", "returns", "type_comment", "decorator_list"):
                continue
            children = value if isinstance(value, list) else [value]
            for position, child in enumerate(children):
                if not isinstance(child, ast.AST):
                    continue
                if isinstance(child, ast.stmt) and isinstance(value, list):
                    if position == 0 and _is_docstring(child):
                        continue
                    if (
                        in_function
                        and isinstance(child, _DELETABLE)
                        and child.lineno not in self.skipped
                        and not (isinstance(child, ast.Expr) and (_is_log_call(child.value) or _is_ellipsis(child)))
                    ):
                        site = self._delete(value, position, qualname)
                        site.function = self.function
                        yield site
                if isinstance(child, ast.JoinedStr):  # f-string: mutate the literal parts, not the format specs
                    yield from self._fstring(child, qualname, in_function)
                    continue
                yield from self.walk(child, qualname, in_function=in_function)

    def _here(self, node: ast.AST, qualname: str, in_function: bool) -> Iterator[_Site]:
        if isinstance(node, ast.Compare):
            for i, op in enumerate(node.ops):
                if type(op) in _CMP:
                    yield self._swap_op(node, qualname, "cmp", node.ops, i, _CMP[type(op)]())
        elif isinstance(node, ast.BoolOp):
            yield self._swap_attr(node, qualname, "bool", "op", ast.Or() if isinstance(node.op, ast.And) else ast.And())
        elif isinstance(node, ast.BinOp) and type(node.op) in _ARITH:
            yield self._swap_attr(node, qualname, "arith", "op", _ARITH[type(node.op)]())
        elif isinstance(node, ast.AugAssign) and type(node.op) in _ARITH:
            yield self._swap_attr(node, qualname, "arith", "op", _ARITH[type(node.op)]())
        elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
            yield self._unwrap_not(node, qualname)
        elif isinstance(node, ast.If | ast.While) and not _is_not(node.test):  # `if not x` has its `not` dropped
            yield self._negate_test(node, qualname)
        elif isinstance(node, ast.Constant):
            yield from self._constant(node, qualname, in_function)

    def _constant(self, node: ast.Constant, qualname: str, in_function: bool) -> Iterator[_Site]:
        value = node.value
        if isinstance(value, bool):
            yield self._swap_attr(node, qualname, "bool", "value", not value)
        elif isinstance(value, int):
            yield self._swap_attr(node, qualname, "num", "value", value + 1)
            yield self._swap_attr(node, qualname, "num", "value", value - 1)
        elif isinstance(value, float):
            yield self._swap_attr(node, qualname, "num", "value", value + 1)
        elif isinstance(value, str) and value and in_function:
            yield self._swap_attr(node, qualname, "str", "value", f"XX{value}XX")

    def _fstring(self, node: ast.JoinedStr, qualname: str, in_function: bool) -> Iterator[_Site]:
        for part in node.values:
            if isinstance(part, ast.Constant):
                for site in self._constant(part, qualname, in_function):
                    site.function = self.function
                    yield site
            elif isinstance(part, ast.FormattedValue):
                yield from self.walk(part.value, qualname, in_function=in_function)

    def _site(self, node: ast.AST, qualname: str, operator: str, mutated: str, apply: Callable[[], None]) -> _Site:
        return _Site(qualname, operator, getattr(node, "lineno", 0), _short(node), mutated, apply)

    def _swap_attr(self, node: ast.AST, qualname: str, operator: str, attr: str, new: object) -> _Site:
        preview = copy.deepcopy(node)
        setattr(preview, attr, new)
        return self._site(node, qualname, operator, _short(preview), lambda: setattr(node, attr, new))

    def _swap_op(self, node: ast.Compare, qualname: str, operator: str, ops: list, i: int, new: ast.cmpop) -> _Site:
        preview = copy.deepcopy(node)
        preview.ops[i] = new
        return self._site(node, qualname, operator, _short(preview), lambda: ops.__setitem__(i, new))

    def _unwrap_not(self, node: ast.UnaryOp, qualname: str) -> _Site:
        def apply() -> None:  # `not x` becomes `not not x`, which is `x` wherever a truth value is read
            node.operand = ast.UnaryOp(op=ast.Not(), operand=node.operand)

        return self._site(node, qualname, "not", _short(node.operand), apply)

    def _negate_test(self, node: ast.If | ast.While, qualname: str) -> _Site:
        test = node.test

        def apply() -> None:
            node.test = ast.UnaryOp(op=ast.Not(), operand=test)

        site = self._site(test, qualname, "not", f"not ({_short(test)})", apply)
        site.line = node.lineno
        return site

    def _delete(self, body: list[ast.stmt], position: int, qualname: str) -> _Site:
        stmt = body[position]

        def apply() -> None:
            body[position] = ast.copy_location(ast.Pass(), stmt)

        return self._site(stmt, qualname, "del", "pass", apply)
