"""The benchmark's output: one Markdown table of every cell, the throughput ratios against LiteLLM, the issue's
targets checked, and the machine the numbers came from."""

from __future__ import annotations

import math
import os
import platform
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from bench.loadgen import LoadResult, TtftResult
from bench.scenarios import LABELS

METHOD = (
    "Gateway bare = master key, no policies: no per-key stage runs. Gateway full = a virtual key whose budget, "
    "rpm and tpm are set but never reached (meter, rate limit, budget reservation and usage record all run) plus "
    "the shipped policies/ (guardrails on input and output, which pass the benchmark's text). "
    "Added latency = this row's p50/p99 minus the direct-to-upstream p50/p99 at the same concurrency and stream "
    "mode (same load generator, same run). CPU ms/req = CPU time (user + system) of the serving process tree "
    "(the upstream for `direct`) during the measured window / requests answered; with several gateway workers the CPU "
    "Redis used for their shared counters is shown beside it. RSS = resident memory of the "
    "largest serving process after the cell. TTFT is measured at 1 client by an aiohttp client (time to the first "
    "`data:` event); wrk measures everything else. Loadgen CPU = the load generator's CPU / wall time (100% = 1 core)."
)


@dataclass(slots=True)
class Row:
    scenario: str
    stream: bool
    clients: int
    result: LoadResult
    cpu_ms_per_request: float
    rss_max_mb: float = 0.0
    rss_total_mb: float = 0.0
    processes: int = 1
    ttft: TtftResult | None = None
    redis_cpu_ms_per_request: float | None = None  # shared counters of several gateway workers


def fmt(value: float | None, digits: int = 2) -> str:
    if value is None or math.isnan(value):
        return "–"
    return f"{value:,.{digits}f}"


def added(value: float, base: float | None) -> float | None:
    return None if base is None or math.isnan(value) or math.isnan(base) else value - base


TABLE_HEADER = (
    "scenario",
    "stream",
    "clients",
    "req/s",
    "p50 ms",
    "p99 ms",
    "added p50 ms",
    "added p99 ms",
    "CPU ms/req",
    "RSS MB",
    "TTFT p50 / p99 ms",
    "added TTFT p50 ms",
    "errors",
    "loadgen CPU",
)


def render_table(rows: Sequence[Row]) -> str:
    direct = {(r.stream, r.clients): r for r in rows if r.scenario == "direct"}
    lines = ["| " + " | ".join(TABLE_HEADER) + " |", "|" + "|".join("---" for _ in TABLE_HEADER) + "|"]
    for row in rows:
        base = direct.get((row.stream, row.clients)) if row.scenario != "direct" else None
        lines.append("| " + " | ".join(table_cells(row, base)) + " |")
    return "\n".join(lines)


def table_cells(row: Row, base: Row | None) -> list[str]:
    result = row.result
    rss = fmt(row.rss_max_mb, 0)
    if row.processes > 1:
        rss += f" ({row.processes} procs, {row.rss_total_mb:,.0f} total)"
    ttft = f"{fmt(row.ttft.p50_ms)} / {fmt(row.ttft.p99_ms)}" if row.ttft else "–"
    cpu = fmt(row.cpu_ms_per_request, 3)
    if row.redis_cpu_ms_per_request is not None:
        cpu += f" + {row.redis_cpu_ms_per_request:.3f} Redis"
    base_ttft = base.ttft if base is not None else None
    ttft_added = added(row.ttft.p50_ms, base_ttft.p50_ms if base_ttft else None) if row.ttft else None
    return [
        LABELS[row.scenario],
        "yes" if row.stream else "no",
        str(row.clients),
        fmt(result.rps, 0),
        fmt(result.p50_ms),
        fmt(result.p99_ms),
        fmt(added(result.p50_ms, base.result.p50_ms if base else None)),
        fmt(added(result.p99_ms, base.result.p99_ms if base else None)),
        fmt(row.cpu_ms_per_request, 3)
        + (f" + {row.redis_cpu_ms_per_request:.3f} Redis" if row.redis_cpu_ms_per_request else ""),
        rss,
        ttft,
        fmt(ttft_added),
        str(result.errors + (row.ttft.errors if row.ttft else 0)),
        f"{result.loadgen_cpu_share:.0%} ({result.generator})",
    ]


def throughput_ratio(rows: Sequence[Row], scenario: str, *, stream: bool, clients: int) -> float | None:
    """scenario's req/s over LiteLLM's in the same cell, or None if either was not measured."""
    cell = {(r.scenario, r.stream, r.clients): r for r in rows}
    ours, peer = cell.get((scenario, stream, clients)), cell.get(("litellm", stream, clients))
    return ours.result.rps / peer.result.rps if ours and peer and peer.result.rps else None


def render_ratios(rows: Sequence[Row]) -> str:
    """Our full-governance (and bare) throughput over LiteLLM's, per stream mode and concurrency."""
    lines = [
        "| stream | clients | gateway full req/s | LiteLLM req/s | full ÷ LiteLLM | bare ÷ LiteLLM |",
        "|---|---|---|---|---|---|",
    ]
    peers = {(r.stream, r.clients): r for r in rows if r.scenario == "litellm"}
    for full in (r for r in rows if r.scenario == "full"):
        peer = peers.get((full.stream, full.clients))
        if peer is None:
            continue
        ratio = throughput_ratio(rows, "full", stream=full.stream, clients=full.clients)
        bare = throughput_ratio(rows, "bare", stream=full.stream, clients=full.clients)
        lines.append(
            f"| {'yes' if full.stream else 'no'} | {full.clients} | {fmt(full.result.rps, 0)} | "
            f"{fmt(peer.result.rps, 0)} | {fmt(ratio, 1)}× | {fmt(bare, 1)}× |"
        )
    return "\n".join(lines)


def cpu_per_request(row: Row | None) -> float | None:
    """The gateway's CPU per request, with Redis's share when several workers count through it."""
    return row.cpu_ms_per_request + (row.redis_cpu_ms_per_request or 0.0) if row else None


def render_targets(rows: Sequence[Row]) -> str:
    """Issue 4's targets for full governance, each marked met or missed (or not measured)."""
    cell = {(r.scenario, r.stream, r.clients): r for r in rows}
    full1, direct1 = cell.get(("full", False, 1)), cell.get(("direct", False, 1))
    full50 = cell.get(("full", False, 50))
    sfull1, sdirect1 = cell.get(("full", True, 1)), cell.get(("direct", True, 1))

    def at_one(attribute: str) -> float | None:
        if not full1 or not direct1:
            return None
        return added(getattr(full1.result, attribute), getattr(direct1.result, attribute))

    ttft = None
    if sfull1 and sdirect1 and sfull1.ttft and sdirect1.ttft:
        ttft = added(sfull1.ttft.p50_ms, sdirect1.ttft.p50_ms)
    checks = [
        ("non-stream req/s at 50 clients ≥ 20× LiteLLM", throughput_ratio(rows, "full", stream=False, clients=50), 20),
        ("stream req/s at 50 clients ≥ 20× LiteLLM", throughput_ratio(rows, "full", stream=True, clients=50), 20),
        ("added p50 at 1 client ≤ 1 ms", at_one("p50_ms"), -1),
        ("added p99 at 1 client ≤ 3 ms", at_one("p99_ms"), -3),
        ("CPU per request at 1 client ≤ 0.4 ms", cpu_per_request(full1), -0.4),
        ("CPU per request at 50 clients ≤ 0.4 ms", cpu_per_request(full50), -0.4),
        ("added TTFT p50 at 1 client ≤ 1 ms", ttft, -1),
        ("RSS per process ≤ 150 MB", max((r.rss_max_mb for r in rows if r.scenario == "full"), default=None), -150),
    ]
    lines = ["| target (gateway full) | measured | verdict |", "|---|---|---|"]
    for name, value, limit in checks:  # a positive limit is a floor, a negative one a ceiling
        if value is None or math.isnan(value):
            verdict = "not measured"
        else:
            verdict = "met" if (value >= limit if limit > 0 else value <= -limit) else "**missed**"
        lines.append(f"| {name} | {fmt(value, 3)} | {verdict} |")
    return "\n".join(lines)


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine_line() -> str:
    return (
        f"{os.cpu_count()} cores ({cpu_model()}), {platform.system()} {platform.release()}, "
        f"Python {platform.python_version()}"
    )


def git(*args: str) -> str:
    root = Path(__file__).resolve().parent.parent
    try:
        done = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return ""
    return done.stdout.strip()


def gateway_source(rev: str | None) -> str:
    """Which gateway code ran: an exported commit, or the working tree (flagged if gateway/ has local changes)."""
    if rev:
        return f"commit {git('rev-parse', '--short', rev)} (exported with `git archive {rev}`; working tree unused)"
    changed = " with uncommitted changes in gateway/" if git("status", "--porcelain", "--", "gateway") else ""
    return f"working tree at commit {git('rev-parse', '--short', 'HEAD') or 'unknown'}{changed}"


def command_line(argv: Sequence[str]) -> str:
    """The command as someone would retype it from the repository root."""
    return " ".join([".venv/bin/python" if "/.venv/" in sys.executable else "python", *argv])


def render_report(rows: Sequence[Row], *, argv: Sequence[str], settings: str, rev: str | None = None) -> str:
    parts = [
        f"Run {datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')} on {machine_line()}",
        f"Command: `{command_line(argv)}`",
        f"Settings: {settings}",
        f"Gateway code: {gateway_source(rev)}",
        "",
        render_table(rows),
        "",
        METHOD,
    ]
    if any(r.scenario == "litellm" for r in rows) and any(r.scenario == "full" for r in rows):
        parts += ["", "Throughput, full governance vs LiteLLM proxy:", "", render_ratios(rows)]
    if any(r.scenario == "full" for r in rows):
        parts += ["", "Issue 4 targets:", "", render_targets(rows)]
    return "\n".join(parts)
