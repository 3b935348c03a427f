"""Runs mutants: one forked pytest per mutant, the mutated module served by an import hook, killed at a timeout.

The parent process imports every third-party module the selected tests use once (learned from a baseline run),
then forks per mutant, so a mutant costs its tests' run time, not pytest's and the libraries' start-up. Tests that
start the gateway in a subprocess see the unmutated code (the import hook lives only in the forked child).
"""

from __future__ import annotations

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
import types
from collections.abc import Callable
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
    return [*tests, "-x", "-q", "-p", "no:cacheprovider", "-o", "addopts=", "--no-header", "--tb=no"]


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
        finally:
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
            Path(names.name).write_text(json.dumps(sorted(sys.modules)))
            return code

        code, seconds = run_forked(work, timeout_s=600, log=log)
        if code != 0:
            raise BaselineError(f"the unmutated tests fail (exit {code}); see {log}")
        return seconds, json.loads(Path(names.name).read_text() or "[]")


def preload(modules: list[str]) -> int:
    """Imports the third-party modules in the parent so each fork starts warm; returns how many imported."""
    imported = 0
    for name in modules:
        if name.split(".")[0] in _OWN_PACKAGES or name in sys.modules:
            continue
        try:
            importlib.import_module(name)
            imported += 1
        except BaseException:  # noqa: BLE001 - a module that cannot import out of context just stays cold
            continue
    return imported


def run_mutant(source: str, *, module: str, path: str, index: int, tests: tuple[str, ...], timeout_s: float) -> Outcome:
    """Runs the tests against mutant `index` of the module at `path` (absolute), in a forked child."""

    def install() -> None:
        code = compile(mutated_tree(source, index), path, "exec", dont_inherit=True)
        sys.meta_path.insert(0, _MutantFinder(module, path, code))

    exit_code, seconds = run_forked(_pytest(tests, install), timeout_s=timeout_s)
    if exit_code is None:
        return Outcome(TIMEOUT, seconds)
    return Outcome(SURVIVED if exit_code == 0 else KILLED, seconds)
