"""Instructions mode: the gateway with full governance under callgrind, N sequential calls, and the instructions
it executes per call.

CPU time per request moved by ±15 % from run to run on a shared 2-core machine (2026-12-05), more than most single
changes save; callgrind counts instructions, which do not depend on what else the machine is doing: the same commit
measured twice agrees within ~1 %. So two commits are compared by running this mode on each (`--gateway-rev`).

What is counted: every thread of the gateway process from the first measured call to the last, minus its
background work, measured first over `--instructions-idle` seconds of no traffic and subtracted at the same rate.
Under callgrind ~20 calls take a second, so the background weighs ~100 times what it does in a real run, and a
poll runs less often under load than idle: the gateway is started with its cache polls and approval sweeps made
rare (`cache_poll_s: 3600`), and where a commit predates that setting the script says how large the subtraction
was. The usage shipper's inserts are per-call work and stay in. Not counted: the
kernel (system calls) and waiting; and valgrind runs one thread at a time, so contention between threads (the GIL)
does not show. Needs valgrind (Debian's package) and is slow: ~40 calls/s.
"""

from __future__ import annotations

import argparse
import http.client
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

from bench.scenarios import MODEL, Workspace, create_key, request_body, run_gateway, run_upstream
from bench.servers import ServerError

WARMUP_CALLS = 300
MAX_BACKGROUND_SHARE = 0.1


def run_instructions(args: argparse.Namespace, tmp: Path) -> int:
    for tool in ("valgrind", "callgrind_control"):
        if shutil.which(tool) is None:
            raise ServerError(f"{tool} is not installed: apt-get install -y valgrind")
    out = tmp / "callgrind.out"
    wrap = ["valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={out}"]
    with run_upstream(tmp) as (upstream, base_url):
        space = Workspace.from_args(args, tmp, base_url, upstream.pid)
        with run_gateway(space, name="full", wrap=wrap) as (server, url):
            key = create_key(url)
            port = int(url.rsplit(":", 1)[1])
            call(port, key, WARMUP_CALLS)
            control(server.pid, "--instr=on")
            started = time.monotonic()
            time.sleep(args.instructions_idle)
            control(server.pid, "--dump")
            idle_s = time.monotonic() - started
            started = time.monotonic()
            call(port, key, args.instructions)  # a new connection: the idle one was closed by keep-alive's timeout
            load_s = time.monotonic() - started
            control(server.pid, "--dump")
    idle, load = dumped_total(Path(f"{out}.1")), dumped_total(Path(f"{out}.2"))
    background_per_s = idle / idle_s
    background = background_per_s * load_s
    per_call = (load - background) / args.instructions
    print(
        "| commit | calls | instructions per call | all instructions per call | background, per s | calls/s |\n"
        "|---|---|---|---|---|---|\n"
        f"| {args.gateway_rev or 'working tree'} | {args.instructions:,} | {per_call:,.0f} | "
        f"{load / args.instructions:,.0f} | {background_per_s / 1e6:.1f} M | {args.instructions / load_s:.0f} |"
    )
    if background > load * MAX_BACKGROUND_SHARE:
        print(
            f"bench: the background was {background / load:.0%} of the instructions counted; at that share the"
            " subtraction is approximate (a poll takes longer under load, so fewer run), so compare this figure"
            " only with commits whose background is alike.",
            file=sys.stderr,
        )
    return 0


def call(port: int, key: str, calls: int) -> None:
    """`calls` governed chat calls, one after another on one keep-alive connection; each must answer 200."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    body = request_body(stream=False)
    headers = {"content-type": "application/json", "authorization": f"Bearer {key}"}
    try:
        for _ in range(calls):
            connection.request("POST", "/v1/chat/completions", body, headers)
            response = connection.getresponse()
            answer = response.read()
            if response.status != 200 or json.loads(answer).get("model") is None:
                raise ServerError(f"a {MODEL} call answered {response.status}: {answer[:300]!r}")
    finally:
        connection.close()


def control(pid: int, option: str) -> None:
    done = subprocess.run(["callgrind_control", option, str(pid)], capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        raise ServerError(f"callgrind_control {option} failed: {done.stderr or done.stdout}")


def dumped_total(path: Path) -> int:
    """The instruction total of one callgrind dump (its `totals:` line)."""
    for line in path.read_text(errors="replace").splitlines():
        if line.startswith("totals:"):
            return int(line.split()[1])
    raise ServerError(f"{path} holds no totals line; did callgrind dump?")
