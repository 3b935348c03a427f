"""One command for the whole benchmark: direct upstream, gateway bare, gateway with full governance and LiteLLM
proxy, at several concurrencies, streaming and not; prints one Markdown table (see bench/README.md).

    .venv/bin/python bench/run.py                 # everything, --workers 1
    .venv/bin/python bench/run.py --quick         # gateway only, a few hundred requests (the smoke test)
    .venv/bin/python bench/run.py --soak          # RSS trend over 1M requests against full governance
    .venv/bin/python bench/run.py --profile bench/PROFILE.md   # py-spy, full governance, 50 clients
    .venv/bin/python bench/run.py --instructions 2000 --gateway-rev HEAD   # callgrind: instructions per call
"""

from __future__ import annotations

import argparse
import shutil
import signal
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

if __package__ in (None, ""):  # run as a script: import `bench` from the repository root, not bench/ itself
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

from bench.loadgen import Load, LoadError, measure_ttft, run_load  # noqa: E402
from bench.proctree import sample_tree, wait_idle  # noqa: E402
from bench.report import Row, render_report  # noqa: E402
from bench.scenarios import (  # noqa: E402
    BENCH_DIR,
    LABELS,
    SCENARIOS,
    Target,
    Workspace,
    check_target,
    export_gateway,
    open_target,
    redis_cpu_s,
    run_upstream,
    write_bodies,
)
from bench.servers import ServerError  # noqa: E402

UNBOUNDED = 1_000_000_000


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="bench/run.py", description=__doc__.splitlines()[0])
    parser.add_argument("--scenarios", default=",".join(SCENARIOS), help="comma list of " + ", ".join(SCENARIOS))
    parser.add_argument("--clients", default="1,10,50,100", help="comma list of concurrencies (default 1,10,50,100)")
    parser.add_argument("--stream", choices=("both", "no", "yes"), default="both", help="which modes (default both)")
    parser.add_argument("--duration", type=float, default=8.0, help="measured seconds per cell (default 8)")
    parser.add_argument("--warmup", type=float, default=2.0, help="unmeasured seconds before each cell (default 2)")
    parser.add_argument("--max-requests", type=int, default=UNBOUNDED, help="cap on requests per cell")
    parser.add_argument("--workers", type=int, default=1, help="worker processes for both gateways (default 1)")
    parser.add_argument("--loadgen", choices=("auto", "wrk", "python"), default="auto", help="default: wrk if found")
    parser.add_argument("--ttft-requests", type=int, default=200, help="streamed requests for TTFT at 1 client")
    parser.add_argument("--skip-litellm", action="store_true", help="leave LiteLLM proxy out")
    parser.add_argument("--litellm-venv", type=Path, default=BENCH_DIR / ".venv-litellm")
    parser.add_argument("--quick", action="store_true", help="gateway bare + full, Python loadgen, ~500 requests")
    parser.add_argument("--output", type=Path, help="also write the report to this file")
    parser.add_argument("--gateway-rev", metavar="REV", help="benchmark this commit (git archive) not the working tree")
    parser.add_argument(
        "--no-request-log", dest="request_log", action="store_false", help="gateway with log.requests: false (A/B)"
    )
    soak = parser.add_argument_group("soak mode")
    soak.add_argument("--soak", type=int, nargs="?", const=1_000_000, metavar="N", help="N requests (default 1M)")
    soak.add_argument("--soak-clients", type=int, default=50)
    soak.add_argument("--soak-scenario", choices=("full", "bare"), default="full")
    soak.add_argument("--soak-stream", action="store_true", help="streamed requests (10 chunks) instead of JSON")
    soak.add_argument("--soak-max-growth", type=float, default=5.0, help="MB per 100k requests that fails (5)")
    soak.add_argument("--soak-max-rss", type=float, default=150.0, help="MB per process that fails (150)")
    soak.add_argument("--soak-timeout", type=float, help="seconds (default: N / 200 + 60)")
    soak.add_argument("--soak-settle", type=float, default=90.0, help="first seconds left out of the trend (90)")
    profile = parser.add_argument_group("profile mode")
    profile.add_argument("--profile", type=Path, metavar="MD", help="py-spy the gateway (full) into MD")
    profile.add_argument("--profile-clients", type=int, default=50)
    profile.add_argument("--profile-duration", type=float, default=10.0)
    profile.add_argument("--profile-top", type=int, default=25)
    counted = parser.add_argument_group("instructions mode")
    counted.add_argument("--instructions", type=int, metavar="N", help="N sequential calls under callgrind")
    counted.add_argument("--instructions-idle", type=float, default=10.0, help="seconds of background measured (10)")
    args = parser.parse_args(argv)
    for name in ("profile_clients", "soak_clients", "soak_max_rss"):
        if getattr(args, name) <= 0:
            parser.error(f"--{name.replace('_', '-')} must be above 0")
    if args.quick:
        args.scenarios, args.clients, args.loadgen = "bare,full", "1,10", "python"
        args.duration, args.warmup, args.max_requests, args.ttft_requests = 5.0, 5.0, 50, 10
        args.warmup_requests, args.idle_wait_s = 10, 0.0  # a smoke run: no waiting for quiet
    else:
        args.warmup_requests, args.idle_wait_s = UNBOUNDED, 20.0
    if args.skip_litellm:
        args.scenarios = ",".join(s for s in args.scenarios.split(",") if s != "litellm")
    unknown = [s for s in args.scenarios.split(",") if s not in SCENARIOS]
    if unknown:
        parser.error(f"unknown scenarios {unknown}; expected some of {', '.join(SCENARIOS)}")
    if args.loadgen == "auto":
        args.loadgen = "wrk" if shutil.which("wrk") else "python"
    elif args.loadgen == "wrk" and not shutil.which("wrk"):
        parser.error("wrk is not installed (apt-get install -y wrk); use --loadgen python")
    return args


def per_request_ms(cpu_s: float, requests: int) -> float:
    return cpu_s * 1000 / requests if requests else float("nan")


def measure_cell(
    target: Target, body: Path, *, stream: bool, clients: int, args: argparse.Namespace, ttft: bool
) -> Row:
    """Warm-up (discarded), then the measured load with the server's CPU read before and after."""
    load = Load(target.url, body, target.auth, clients, args.duration, args.max_requests, stream)
    # Each cell starts from a quiet server: the previous cell's usage records (13k after 100 clients) are shipped
    # to the database after its load stops, and would otherwise be charged to this cell's CPU and TTFT.
    if wait_idle(target.pid, timeout_s=args.idle_wait_s) >= args.idle_wait_s > 0:
        print(f"  (the server was still busy after {args.idle_wait_s:g} s; measuring anyway)", file=sys.stderr)
    if args.warmup > 0:
        warmup = Load(target.url, body, target.auth, clients, args.warmup, args.warmup_requests, stream)
        run_load(warmup, generator=args.loadgen)
    shares_redis = args.workers > 1 and target.scenario in ("bare", "full")
    redis_before = redis_cpu_s() if shares_redis else None
    before = sample_tree(target.pid)
    result = run_load(load, generator=args.loadgen)
    after = sample_tree(target.pid)
    redis_after = redis_cpu_s() if shares_redis else None
    row = Row(target.scenario, stream, clients, result, per_request_ms(after.cpu_s - before.cpu_s, result.requests))
    row.rss_max_mb, row.rss_total_mb, row.processes = after.rss_max_mb, after.rss_total_mb, after.processes
    if redis_before is not None and redis_after is not None:
        row.redis_cpu_ms_per_request = per_request_ms(redis_after - redis_before, result.requests)
    if ttft:
        wait_idle(target.pid, timeout_s=args.idle_wait_s)  # the cell's own usage records are being shipped
        row.ttft = measure_ttft(
            target.url, body, target.auth, requests=args.ttft_requests, warmup=max(5, args.ttft_requests // 10)
        )
    print(
        f"  {LABELS[target.scenario]:<16} stream={'yes' if stream else 'no ':<3} clients={clients:<4} "
        f"{result.rps:>9,.0f} req/s  p50 {result.p50_ms:8.2f} ms  p99 {result.p99_ms:8.2f} ms  "
        f"cpu {row.cpu_ms_per_request:6.3f} ms/req  errors {result.errors}",
        file=sys.stderr,
        flush=True,
    )
    return row


def run_matrix(args: argparse.Namespace, tmp: Path) -> list[Row]:
    scenarios = args.scenarios.split(",")
    clients = [int(c) for c in args.clients.split(",")]
    streams = {"both": (False, True), "no": (False,), "yes": (True,)}[args.stream]
    bodies = write_bodies(tmp)
    rows: list[Row] = []
    with run_upstream(tmp) as (upstream, base_url):
        space = Workspace.from_args(args, tmp, base_url, upstream.pid)
        for scenario in scenarios:
            print(f"{LABELS[scenario]} (workers {args.workers}, loadgen {args.loadgen}):", file=sys.stderr)
            with open_target(scenario, space) as target:
                for stream in streams:
                    check_target(target, stream=stream)
                    for n in clients:
                        with_ttft = stream and n == 1
                        row = measure_cell(target, bodies[stream], stream=stream, clients=n, args=args, ttft=with_ttft)
                        rows.append(row)
    return rows


def settings_line(args: argparse.Namespace) -> str:
    return (
        f"workers {args.workers}, loadgen {args.loadgen}, {args.duration:g} s per cell after the server is idle "
        f"(< 5 % of a core, at most {args.idle_wait_s:g} s) and {args.warmup:g} s of warm-up, "
        f"max {args.max_requests:,} requests per cell, TTFT over {args.ttft_requests} requests"
    )


def stop_on_sigterm() -> None:
    """SIGTERM unwinds like Ctrl-C, so every `with` block stops the servers it started."""

    def handler(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, handler)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    stop_on_sigterm()
    shown = ["bench/run.py", *(sys.argv[1:] if argv is None else argv)]
    try:
        with tempfile.TemporaryDirectory(prefix="gateway-bench-") as tmp:
            args.gateway_src = export_gateway(args.gateway_rev, Path(tmp) / "src") if args.gateway_rev else None
            if args.soak is not None:
                from bench.soak import run_soak

                return run_soak(args, Path(tmp))
            if args.instructions is not None:
                from bench.instructions import run_instructions

                return run_instructions(args, Path(tmp))
            if args.profile is not None:
                from bench.profiling import run_profile

                return run_profile(args, Path(tmp), argv=shown)
            rows = run_matrix(args, Path(tmp))
    except (ServerError, LoadError) as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 2
    report = render_report(rows, argv=shown, settings=settings_line(args), rev=args.gateway_rev)
    print(report)
    if args.output:
        args.output.write_text(report + "\n")
    failed = [r for r in rows if r.result.errors or not r.result.requests or (r.ttft and r.ttft.errors)]
    for row in failed:
        print(f"bench: {LABELS[row.scenario]} stream={row.stream} clients={row.clients} had errors", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
