"""`python -m tools.mutate [MODULE ...]`: mutation-test the governance core (all modules, or the ones named)."""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from tools.mutate.imports import importers_of
from tools.mutate.operators import list_mutants
from tools.mutate.report import (
    RESULTS_MD,
    ModuleResult,
    load_equivalent,
    load_results,
    markdown,
    save_result,
    table,
)
from tools.mutate.runner import KILLED, SURVIVED, TIMEOUT, BaselineError, baseline, preload, run_mutant
from tools.mutate.targets import TARGETS, Target, get_target

ROOT = Path(__file__).resolve().parents[2]


def mutate(
    target: Target,
    *,
    check_equivalent: bool,
    limit: int | None,
    match: list[str] | None = None,
    only: set[str] | None = None,
) -> ModuleResult:
    path = str(ROOT / target.path)
    source = Path(path).read_text()
    mutants = [m for m in list_mutants(source) if not match or any(text in m.id for text in match)][:limit]
    mutants = [m for m in mutants if only is None or m.id in only]
    equivalent = load_equivalent().get(target.path, {})
    log = ROOT / "tools" / "mutate" / f".baseline-{target.name}.log"
    base_s, modules = baseline(target.tests, log=log)
    warmed = preload(modules)
    cold = frozenset(importers_of(target.module, ROOT))
    timeout_s = target.mutant_timeout(base_s)
    reload_works = _passes_unmutated(target, source, path, timeout_s, cold=cold, function=None, log=log)
    if not reload_works:  # some modules' tests break when the app's modules are imported twice: swap code only
        hot = next((m.function for m in mutants if m.function is not None), None)
        if hot is None or not _passes_unmutated(target, source, path, timeout_s, cold=cold, function=hot, log=log):
            raise BaselineError(f"{target.name}: the unmutated module fails through the import hook; see {log}")
        print("  reloading breaks these tests: only mutants inside one function run, the others are skipped")
    log.unlink()
    print(f"{target.name}: {len(mutants)} mutants, baseline {base_s:.1f} s, {warmed} modules preloaded", flush=True)
    result = ModuleResult(target.name, target.path, len(mutants), baseline_s=round(base_s, 2))
    ids = {m.id for m in mutants}
    result.stale_equivalent = sorted(set(equivalent) - ids)
    started = time.monotonic()
    for done, mutant in enumerate(mutants):
        if done % 50 == 0:
            print(f"  {done}/{len(mutants)} after {time.monotonic() - started:.0f} s", flush=True)
        if mutant.id in equivalent and not check_equivalent:
            result.equivalent += 1
            continue
        if mutant.function is None and not reload_works:
            result.skipped += 1
            continue
        outcome = run_mutant(
            source,
            module=target.module,
            path=path,
            index=mutant.index,
            tests=target.tests,
            timeout_s=timeout_s,
            function=mutant.function,
            cold=cold,
        )
        if outcome.status == SURVIVED and mutant.id in equivalent:
            result.equivalent += 1
        elif outcome.status == SURVIVED:
            result.survivors.append({"id": mutant.id, "line": mutant.line})
            print(f"  survived line {mutant.line}: {mutant.id}", flush=True)
        elif outcome.status == TIMEOUT:
            result.timeout += 1
        else:
            assert outcome.status == KILLED
            result.killed += 1
            if mutant.id in equivalent:
                print(f"  listed as equivalent but killed: {mutant.id}", flush=True)
    result.seconds = round(time.monotonic() - started, 1)
    return result


def _passes_unmutated(
    target: Target, source: str, path: str, timeout_s: float, *, cold: frozenset[str], function: str | None, log: Path
) -> bool:
    """The unmutated source, through the same hook (reload or code swap), must pass, or every mutant "dies"."""
    outcome = run_mutant(
        source,
        module=target.module,
        path=path,
        index=None,
        tests=target.tests,
        timeout_s=timeout_s,
        function=function,
        cold=cold,
        log=log,
    )
    return outcome.status == SURVIVED


def rerun_survivors(target: Target, previous: ModuleResult) -> ModuleResult:
    """The last result, with its survivors run again: the ones now killed (or now listed as equivalent) move."""
    generated = {m.id for m in list_mutants((ROOT / target.path).read_text())}
    gone_from_source = [s for s in previous.survivors if s["id"] not in generated]  # code or operators changed
    previous.mutants -= len(gone_from_source)
    previous.survivors = [s for s in previous.survivors if s["id"] in generated]
    survivors = [str(s["id"]) for s in previous.survivors]
    again = mutate(target, check_equivalent=False, limit=None, only=set(survivors)) if survivors else None
    if again is None:
        return previous
    still = {str(s["id"]) for s in again.survivors}
    gone = [s for s in previous.survivors if s["id"] not in still]
    previous.killed += again.killed
    previous.timeout += again.timeout
    previous.equivalent += again.equivalent
    previous.survivors = [s for s in previous.survivors if s["id"] in still]
    previous.seconds = round(previous.seconds + again.seconds, 1)
    print(f"  {len(gone)} of {len(survivors)} survivors now killed or listed as equivalent", flush=True)
    return previous


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.mutate", description=__doc__)
    parser.add_argument("modules", nargs="*", help=f"names (default: all): {', '.join(t.name for t in TARGETS)}")
    parser.add_argument("--list", action="store_true", help="print the mutants and exit")
    parser.add_argument("--table", action="store_true", help="print the last results' table (for README) and exit")
    parser.add_argument("--check-equivalent", action="store_true", help="also run mutants listed as equivalent")
    parser.add_argument("--limit", type=int, default=None, help="only the first N mutants (to try the runner)")
    parser.add_argument("--match", action="append", help="only mutants whose id contains this text (repeatable)")
    parser.add_argument(
        "--survivors", action="store_true", help="rerun only the last run's survivors (after adding tests) and update"
    )
    args = parser.parse_args(argv)
    try:
        targets = [get_target(name) for name in args.modules] if args.modules else list(TARGETS)
    except KeyError as e:
        parser.error(str(e.args[0]))
    os.chdir(ROOT)
    sys.path.insert(0, str(ROOT))
    if args.list:
        for target in targets:
            for m in list_mutants((ROOT / target.path).read_text()):
                print(f"{target.path}:{m.line}: {m.id}")
        return 0
    results = load_results()
    if args.table:
        print(table([results[t.name] for t in TARGETS if t.name in results]))
        return 0
    partial = args.limit is not None or args.match is not None  # a partial run prints, and records nothing
    for target in targets:
        previous = results.get(target.name)
        if args.survivors and previous is not None:
            result = rerun_survivors(target, previous)
        else:
            result = mutate(target, check_equivalent=args.check_equivalent, limit=args.limit, match=args.match)
        print(table([result]), flush=True)
        if not partial:
            order = [t.name for t in TARGETS]
            results = save_result(result, order)
            RESULTS_MD.write_text(markdown([results[n] for n in order if n in results]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
