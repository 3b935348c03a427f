"""Runs mutants: one forked pytest per mutant, the mutated module served by an import hook, killed at a timeout.

The parent process imports every third-party module the selected tests use once (learned from a baseline run),
then forks per mutant, so a mutant costs its tests' run time, not pytest's and the libraries' start-up. Tests that
start the gateway in a subprocess see the unmutated code (the import hook lives only in the forked child).
"""

from __future__ import annotations

import ast
import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import json
import os
import select
import signal
import sys
import tempfile
import time
import traceback
import types
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from tools.mutate.operators import mutated_tree

KILLED, SURVIVED, TIMEOUT = "killed", "survived", "timeout"
_OWN_PACKAGES = {"gateway", "tests", "tools", "conftest", "__main__"}


@dataclass(frozen=True)
class Outcome:
    status: str  # killed | survived | timeout
    seconds: float


class BaselineError(RuntimeError):
    """The unmutated module fails its own tests: mutants would all look killed."""


class _MutantLoader(importlib.machinery.SourceFileLoader):
    def __init__(self, fullname: str, path: str, code: types.CodeType) -> None:
        super().__init__(fullname, path)
        self._code = code

    def get_code(self, fullname: str) -> types.CodeType:  # never reads nor writes __pycache__
        return self._code


class _MutantFinder(importlib.abc.MetaPathFinder):
    def __init__(self, module: str, path: str, code: types.CodeType) -> None:
        self.module, self.path, self.code = module, path, code

    def find_spec(self, fullname: str, path: object, target: object = None) -> importlib.machinery.ModuleSpec | None:
        if fullname != self.module:
            return None
        return importlib.util.spec_from_file_location(
            fullname, self.path, loader=_MutantLoader(fullname, self.path, self.code)
        )


def pytest_args(tests: tuple[str, ...]) -> list[str]:
    """Stop at the first failure, print nothing, never touch the cache; the project's addopts stay off."""
    return [*tests, "-x", "-q", "-p", "no:cacheprovider", "-o", "addopts=", "--no-header", "--tb=short", *_QUIET]


# Plug-ins the parent preloaded cannot have their asserts rewritten; pytest says so, and warnings are errors.
_QUIET = ("-W", "ignore::pytest.PytestAssertRewriteWarning")


def run_forked(work: Callable[[], int], *, timeout_s: float, log: Path | None = None) -> tuple[int | None, float]:
    """Runs `work` in a forked child (its own process group); returns its exit code (None on timeout) and seconds."""
    started = time.monotonic()
    pid = os.fork()
    if pid == 0:  # the child: never returns
        code = 3
        try:
            os.setpgid(0, 0)
            target = os.open(log or os.devnull, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
            os.dup2(target, 1)
            os.dup2(target, 2)
            code = work()
        except BaseException:  # noqa: BLE001 - the child must reach os._exit whatever happens
            traceback.print_exc()
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
    pidfd = os.pidfd_open(pid)
    try:
        ready, _, _ = select.select([pidfd], [], [], timeout_s)
        if not ready:
            os.killpg(pid, signal.SIGKILL)
        _, status = os.waitpid(pid, 0)
    finally:
        os.close(pidfd)
    seconds = time.monotonic() - started
    return (os.waitstatus_to_exitcode(status) if ready else None), seconds


def _pytest(tests: tuple[str, ...], before: Callable[[], None] | None = None) -> Callable[[], int]:
    def work() -> int:
        import pytest

        if before is not None:
            before()
        return int(pytest.main(pytest_args(tests)))

    return work


def baseline(tests: tuple[str, ...], *, log: Path) -> tuple[float, list[str]]:
    """Runs the unmutated tests; returns their seconds and the modules they imported. Raises BaselineError."""
    with tempfile.NamedTemporaryFile("r", suffix=".json") as names:

        def work() -> int:
            code = _pytest(tests)()
            Path(names.name).write_text(json.dumps(list(sys.modules)))  # import order: C parts after their module
            return code

        code, seconds = run_forked(work, timeout_s=600, log=log)
        if code != 0:
            raise BaselineError(f"the unmutated tests fail (exit {code}); see {log}")
        return seconds, json.loads(Path(names.name).read_text() or "[]")


def preload(modules: list[str]) -> int:
    """Imports the modules the tests use (but the tests themselves) in the parent, so each fork starts warm.
    Returns how many it imported."""
    imported = 0
    for name in modules:
        if name.split(".")[0] in _OWN_PACKAGES - {"gateway"} or name in sys.modules:
            continue
        try:
            importlib.import_module(name)
            imported += 1
        except BaseException:  # noqa: BLE001 - a module that cannot import out of context just stays cold
            continue
    return imported


def _code_objects(code: types.CodeType) -> Iterator[types.CodeType]:
    yield code
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            yield from _code_objects(const)


def _live_functions(module: types.ModuleType, qualname: str) -> Iterator[types.FunctionType]:
    """The function objects the loaded module holds under `qualname` (unwrapping descriptors and decorators)."""
    owner: object = module
    *path, name = qualname.split(".")
    for part in path:
        owner = vars(owner)[part]
    found = vars(owner)[name]
    candidates = [getattr(found, attr, None) for attr in ("__func__", "fget", "fset", "fdel")] + [found]
    for candidate in candidates:
        while hasattr(candidate, "__wrapped__"):
            candidate = candidate.__wrapped__
        if isinstance(candidate, types.FunctionType) and candidate.__code__.co_qualname == qualname:
            yield candidate


def swap_code(module: types.ModuleType, code: types.CodeType, qualname: str) -> None:
    """Gives the loaded function `qualname` the body compiled in `code`: every reference to it, including names
    other modules imported, then runs the mutant. Raises LookupError if it cannot be found."""
    new = [c for c in _code_objects(code) if c.co_qualname == qualname]
    for function in _live_functions(module, qualname):
        for candidate in new:
            if candidate.co_firstlineno == function.__code__.co_firstlineno:
                function.__code__ = candidate
                return
    raise LookupError(f"no live function {qualname} in {module.__name__}")


def run_mutant(
    source: str,
    *,
    module: str,
    path: str,
    index: int | None,
    tests: tuple[str, ...],
    timeout_s: float,
    function: str | None = None,
    cold: frozenset[str] = frozenset(),
    log: Path | None = None,
) -> Outcome:
    """Runs the tests against mutant `index` (None: the unmutated source, through the same hook) of the module at
    `path` (absolute), in a forked child. A mutant inside one `function` has that function's code swapped in the
    loaded module; any other is imported afresh, with the `cold` modules (its importers) dropped first."""

    def install() -> None:
        tree = ast.parse(source) if index is None else mutated_tree(source, index)
        code = compile(tree, path, "exec", dont_inherit=True)
        if function is not None and module in sys.modules:
            swap_code(sys.modules[module], code, function)
            return
        for name in cold:
            sys.modules.pop(name, None)
        sys.meta_path.insert(0, _MutantFinder(module, path, code))

    exit_code, seconds = run_forked(_pytest(tests, install), timeout_s=timeout_s, log=log)
    if exit_code is None:
        return Outcome(TIMEOUT, seconds)
    if exit_code == 5:  # no tests collected: the selection is wrong, not the mutant caught
        raise BaselineError(f"no tests ran for {module}: check its test selection")
    return Outcome(SURVIVED if exit_code == 0 else KILLED, seconds)
