"""Scores and reports: the equivalent-mutant list, the per-module counts, results.json and RESULTS.md."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
EQUIVALENT = HERE / "equivalent.yaml"
RESULTS_JSON = HERE / "results.json"
RESULTS_MD = HERE / "RESULTS.md"


@dataclass
class ModuleResult:
    name: str
    path: str
    mutants: int
    killed: int = 0
    timeout: int = 0
    equivalent: int = 0
    skipped: int = 0  # not run: outside any one function, in a module whose tests break on a reload
    seconds: float = 0.0
    baseline_s: float = 0.0
    survivors: list[dict[str, object]] = field(default_factory=list)
    stale_equivalent: list[str] = field(default_factory=list)  # listed as equivalent, but no such mutant

    @property
    def survived(self) -> int:
        return len(self.survivors)

    @property
    def score(self) -> float:
        """Killed (a timeout is a failing suite too) over non-equivalent mutants, in percent."""
        judged = self.mutants - self.equivalent - self.skipped
        return 100.0 * (self.killed + self.timeout) / judged if judged else 100.0


def load_equivalent(path: Path = EQUIVALENT) -> dict[str, dict[str, str]]:
    """Module path -> {mutant id: why it is equivalent}."""
    if not path.exists():
        return {}
    data = yaml.safe_load(path.read_text()) or {}
    return {module: {e["id"]: e["why"] for e in entries or []} for module, entries in data.items()}


def load_results(path: Path = RESULTS_JSON) -> dict[str, ModuleResult]:
    if not path.exists():
        return {}
    return {name: ModuleResult(**row) for name, row in json.loads(path.read_text()).items()}


def save_result(result: ModuleResult, order: list[str], path: Path = RESULTS_JSON) -> dict[str, ModuleResult]:
    """Stores one module's result beside the others (read afresh: another run may have saved meanwhile)."""
    results = load_results(path)
    results[result.name] = result
    ordered = {name: asdict(results[name]) for name in order if name in results}
    path.write_text(json.dumps(ordered, indent=1) + "\n")
    return results


def table(results: list[ModuleResult]) -> str:
    lines = [
        "| module | mutants | killed | survived | equivalent | timeout | not run | killed of non-equivalent |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        lines.append(
            f"| `{r.path}` | {r.mutants} | {r.killed} | {r.survived} | {r.equivalent} | {r.timeout} | {r.skipped} "
            f"| {r.score:.1f} % |"
        )
    return "\n".join(lines)


def markdown(results: list[ModuleResult]) -> str:
    parts = [
        "# Mutation testing results",
        "",
        "Written by `make mutate` (tools/mutate); equivalent mutants are listed in tools/mutate/equivalent.yaml.",
        "",
        table(results),
    ]
    for r in results:
        if not r.survivors and not r.stale_equivalent:
            continue
        parts += ["", f"## {r.path}: {r.survived} surviving", ""]
        for s in r.survivors:
            parts.append(f"- line {s['line']}: `{s['id']}`")
        for stale in r.stale_equivalent:
            parts.append(f"- listed as equivalent but no longer generated: `{stale}`")
    return "\n".join(parts) + "\n"
