"""Profile mode: py-spy samples the gateway (full governance, non-stream, `--profile-clients`, 50 by default) under
load and writes the functions with the most own time, and the most inclusive time, as Markdown tables."""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from bench.loadgen import Load, LoadResult, run_load
from bench.report import command_line, machine_line
from bench.scenarios import Workspace, check_target, open_target, run_upstream, write_bodies
from bench.servers import ServerError


def find_py_spy() -> str:
    local = Path(sys.executable).parent / "py-spy"
    found = str(local) if local.exists() else shutil.which("py-spy")
    if found is None:
        raise ServerError("py-spy is not installed: .venv/bin/pip install py-spy")
    return found


def run_profile(args: argparse.Namespace, tmp: Path, *, argv: Sequence[str]) -> int:
    """Two py-spy recordings under one continuous load: Python frames only, then with native frames."""
    py_spy = find_py_spy()
    bodies = write_bodies(tmp)
    results: list[LoadResult] = []
    recordings = {"python": tmp / "profile-python.txt", "native": tmp / "profile-native.txt"}
    with run_upstream(tmp) as (upstream, base_url):
        space = Workspace.from_args(args, tmp, base_url, upstream.pid)
        with open_target("full", space) as target:
            check_target(target, stream=False)
            run_load(
                Load(target.url, bodies[False], target.auth, args.profile_clients, 2, 1_000_000, False),
                generator=args.loadgen,
            )
            # The load outlasts the recordings at both ends, so every sample is taken under load.
            seconds = 2 * args.profile_duration + 4
            load = Load(target.url, bodies[False], target.auth, args.profile_clients, seconds, 10**9, False)
            loader = threading.Thread(target=lambda: results.append(run_load(load, generator=args.loadgen)))
            loader.start()
            try:
                threading.Event().wait(1)
                for kind, path in recordings.items():
                    record(py_spy, target.pid, path, args, native=kind == "native")
            finally:
                loader.join()
    stacks = {kind: load_stacks(path) for kind, path in recordings.items()}
    result = results[0] if results else None
    report = render_profile(stacks, top=args.profile_top, clients=args.profile_clients, result=result, argv=argv)
    args.profile.write_text(report + "\n")
    print(report)
    return 0


def record(py_spy: str, pid: int, output: Path, args: argparse.Namespace, *, native: bool) -> None:
    """py-spy record in raw (collapsed) format; --gil keeps only samples of the thread holding the GIL, so
    threads waiting for it (aiosqlite's worker, most of the time) do not pass for CPU use."""
    command = [py_spy, "record", "--pid", str(pid), "--format", "raw", "--output", str(output), "--gil"]
    command += ["--duration", f"{args.profile_duration:g}", "--rate", "100", "--nolineno"]
    if native:
        command.append("--native")
    if args.workers > 1:
        command.append("--subprocesses")
    subprocess.run(command, check=True, capture_output=True, timeout=args.profile_duration + 60)


def load_stacks(path: Path) -> Counter[tuple[str, ...]]:
    """py-spy's raw (collapsed) format: `frame;frame;...;leaf count` per line, root first."""
    stacks: Counter[tuple[str, ...]] = Counter()
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit():
            stacks[tuple(stack.split(";"))] += int(count)
    return stacks


def own_and_total(stacks: Counter[tuple[str, ...]]) -> tuple[Counter[str], Counter[str]]:
    """Samples where a function was the leaf (own time), and where it was anywhere on the stack (total time)."""
    own: Counter[str] = Counter()
    total: Counter[str] = Counter()
    for stack, count in stacks.items():
        frames = [f for f in stack if not f.startswith("process ") and not f.startswith("thread ")]
        if not frames:
            continue
        own[frames[-1]] += count
        for frame in set(frames):
            total[frame] += count
    return own, total


def render_profile(
    stacks: dict[str, Counter[tuple[str, ...]]],
    *,
    top: int,
    clients: int,
    result: LoadResult | None,
    argv: Sequence[str],
) -> str:
    load = f"{result.rps:,.0f} req/s, p50 {result.p50_ms:.2f} ms, during the profile" if result else "load unknown"
    lines = [
        "# Gateway hot-path profile",
        "",
        f"Run {datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')} on {machine_line()}.",
        f"Command: `{command_line(argv)}`.",
        "",
        "Gateway with full governance (a virtual key with budget, rpm and tpm: meter, rate limit, budget and usage "
        f"record run; the shipped policies/: guardrails on input and output), non-stream, "
        f"{clients} client{'s' if clients != 1 else ''} ({load}). "
        "py-spy at 100 Hz with `--gil`: only samples of the thread holding the GIL, "
        "i.e. where the interpreter spends its time. Own = the function itself was running; total = it was anywhere "
        "on the stack.",
    ]
    python_stacks, native_stacks = stacks["python"], stacks["native"]
    own, total = own_and_total(python_stacks)
    samples = sum(python_stacks.values())
    lines += ["", f"## Top {top} functions by own time (Python frames; C code counts as its caller's own time)", ""]
    lines += [f"{samples:,} samples.", "", "| # | function (file) | own % | total % |", "|---|---|---|---|"]
    for i, (frame, count) in enumerate(own.most_common(top), 1):
        lines.append(f"| {i} | `{frame}` | {100 * count / samples:.1f} | {100 * total[frame] / samples:.1f} |")
    lines += ["", f"## Top {top} by total (inclusive) time, Python frames", "", "| # | function (file) | total % |"]
    lines.append("|---|---|---|")
    for i, (frame, count) in enumerate(total.most_common(top), 1):
        lines.append(f"| {i} | `{frame}` | {100 * count / samples:.1f} |")
    own, total = own_and_total(native_stacks)
    samples = sum(native_stacks.values())
    lines += ["", f"## Top {top} by own time with native frames (`--native`: C functions such as the GC show up)", ""]
    lines += [f"{samples:,} samples.", "", "| # | function (file) | own % |", "|---|---|---|"]
    for i, (frame, count) in enumerate(own.most_common(top), 1):
        lines.append(f"| {i} | `{frame}` | {100 * count / samples:.1f} |")
    return "\n".join(lines)
