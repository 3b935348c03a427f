"""Which of the project's modules import a given module, directly or not (read from their source, imports inside
functions included), so the runner can preload every other one before it forks."""

from __future__ import annotations

import ast
from pathlib import Path


def module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def direct_imports(source: str, *, package: str, known: set[str]) -> set[str]:
    """The project modules (from `known`) that `source` names in any import statement."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolve against the importing package
                anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{anchor}.{base}" if base else anchor
            names = [base] + [f"{base}.{alias.name}" for alias in node.names]
        else:
            continue
        for name in names:
            parts = name.split(".")
            found.update(".".join(parts[: i + 1]) for i in range(len(parts)) if ".".join(parts[: i + 1]) in known)
    return found


def importers_of(target: str, root: Path, packages: tuple[str, ...] = ("gateway",)) -> set[str]:
    """`target` and every project module that imports it, however indirectly."""
    files = {module_name(root, p): p for pkg in packages for p in (root / pkg).rglob("*.py")}
    known = set(files)
    graph = {}
    for name, path in files.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        graph[name] = direct_imports(path.read_text(), package=package, known=known)
    tainted, changed = {target}, True
    while changed:
        changed = False
        for name, deps in graph.items():
            if name not in tainted and deps & tainted:
                tainted.add(name)
                changed = True
    return tainted
