"""The `gateway` command starts light: --version and an admin command's --help load neither the server nor pydantic
(`-X importtime` lists every module a process imported; a timing assertion would be flaky on a shared machine)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import gateway

# What the server needs and the admin commands do not (each of these costs tens to hundreds of milliseconds).
HEAVY = ("fastapi", "starlette", "sqlalchemy", "sqlmodel", "litellm", "httpx", "pydantic", "pydantic_settings",
         "yaml", "jinja2", "aiohttp", "asyncio", "gateway.config", "gateway.settings.model")  # fmt: skip
SOURCE = str(Path(gateway.__file__).parents[1])


def imported_modules(*argv: str) -> set[str]:
    """The modules `python -m gateway ARGV` imports (it must exit 0)."""
    env = {**os.environ, "PYTHONPATH": SOURCE}
    command = [sys.executable, "-X", "importtime", "-m", "gateway", *argv]
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    lines = [line for line in done.stderr.splitlines() if line.startswith("import time:")]
    assert lines, "no -X importtime output"
    return {line.rsplit("|", 1)[1].strip() for line in lines}


def heavy_in(modules: set[str]) -> list[str]:
    return sorted(m for m in modules if any(m == h or m.startswith(h + ".") for h in HEAVY))


@pytest.mark.parametrize(
    "argv",
    [("--version",), ("--help",), ("keys", "list", "--help"), ("prompts", "show", "--help"),
     ("usage", "--help"), ("approvals", "wait", "--help"), ("audit", "export", "--help")],
    ids=" ".join,
)  # fmt: skip
def test_version_and_admin_help_import_nothing_heavy(argv: tuple[str, ...]) -> None:
    """~1 s of imports before; each of these runs in a subprocess (~60 ms)."""
    modules = imported_modules(*argv)
    assert "gateway.cli" in modules
    assert heavy_in(modules) == []
