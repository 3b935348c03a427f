"""The package layout of ARCHITECTURE.md, enforced: imports point down the layers and no modules import each other
in a cycle, counting every import (module level, inside functions, and under TYPE_CHECKING)."""

from __future__ import annotations

import ast
from pathlib import Path

import gateway

ROOT = Path(gateway.__file__).parent

# Bottom to top. A module may import its own unit, a unit of its layer, or a unit of a lower one.
LAYERS: list[set[str]] = [
    # foundations: errors, the config file (with each package's config section), storage, the upstream providers
    {"errors", "config", "settings", "storage", "providers"},
    # the call as every layer sees it (caller, context), the wire shapes, the admin API's HTTP client
    {"calls", "schemas", "admin_client"},
    # the pipeline: the stage interface, the runner, dispatch over deployments
    {"pipeline"},
    # capabilities: each owns one thing, with its stage, store and CLI
    {"identity", "limits", "checks", "policy", "toolcalls", "approvals", "audit", "usage", "prompts", "telemetry"},
    # surfaces and wiring
    {"services", "tasks", "routers", "app", "cli", "middleware", "httpserver", "allocator", "__main__", "evals"},
]
RANK = {unit: rank for rank, units in enumerate(LAYERS) for unit in units}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {module_name(p): p for p in ROOT.rglob("*.py") if "migrations" not in p.parts}


def unit_of(module: str) -> str:
    """The layer unit of a module: its top-level package, except a package's `config` section, which the root
    config assembles and so sits with it at the bottom."""
    parts = module.split(".")
    if len(parts) == 3 and parts[2] == "config":
        return "config"
    return parts[1] if len(parts) > 1 else ""


def imports_of(module: str) -> set[str]:
    path = MODULES[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(
                    package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else [])
                )
            names = [base] + [f"{base}.{alias.name}" for alias in node.names]
        else:
            continue
        found.update(name for name in names if name in MODULES and name != module)
    return found


GRAPH = {module: imports_of(module) for module in MODULES}


def test_every_module_is_in_a_layer():
    assert sorted({unit_of(m) for m in MODULES} - set(RANK) - {""}) == []


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    return [
        f"{module} -> {target}"
        for module, targets in sorted(graph.items())
        if module != "gateway"  # the root package: __version__, and create_app imported lazily for the server
        for target in sorted(targets)
        if target != "gateway" and RANK[unit_of(target)] > RANK[unit_of(module)]
    ]


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    graph = {m: {t for t in targets if t != "gateway"} for m, targets in graph.items() if m != "gateway"}
    state: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for target in sorted(graph.get(node, ())):
            if state.get(target) == 1:
                cycles.append(stack[stack.index(target) :] + [target])
            elif target not in state:
                visit(target)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)
    return cycles


def test_imports_point_down_the_layers():
    assert upward_imports(GRAPH) == []


def test_no_import_cycles():
    assert find_cycles(GRAPH) == []


def test_the_checks_see_an_upward_import_and_a_cycle():
    graph = {
        "gateway.pipeline.runner": {"gateway.calls.context", "gateway.policy.store"},
        "gateway.policy.store": {"gateway.prompts.config", "gateway.toolcalls.rules"},
        "gateway.toolcalls.rules": {"gateway.policy.store"},
        "gateway.prompts.config": set(),
    }
    assert upward_imports(graph) == ["gateway.pipeline.runner -> gateway.policy.store"]
    assert find_cycles(graph) == [["gateway.policy.store", "gateway.toolcalls.rules", "gateway.policy.store"]]
