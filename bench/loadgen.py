"""Load generators: wrk (with bench/wrk/post.lua) and a pure-Python aiohttp fallback, plus a time-to-first-token
client; each run is bounded both in time and in requests, and reports its own CPU so it can be checked."""

from __future__ import annotations

import asyncio
import json
import math
import os
import resource
import signal
import subprocess
import threading
import time
from array import array
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import aiohttp

from bench.servers import signal_group

WRK_SCRIPT = Path(__file__).resolve().parent / "wrk" / "post.lua"
PROGRESS_EVERY = 1000
Progress = Callable[[int], None]
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Load:
    """What to send: one body to one URL from `clients` keep-alive connections, until duration_s has passed
    or max_requests have been answered, whichever comes first."""

    url: str
    body_file: Path
    auth: str | None
    clients: int
    duration_s: float
    max_requests: int
    stream: bool
    timeout_s: float = 10.0


@dataclass(frozen=True, slots=True)
class LoadResult:
    requests: int  # answered with a 2xx (and, for the Python generator, a complete stream)
    errors: int  # other statuses, socket errors, timeouts, broken streams
    duration_s: float
    p50_ms: float
    p99_ms: float
    loadgen_cpu_s: float
    generator: str

    @property
    def rps(self) -> float:
        return self.requests / self.duration_s if self.duration_s > 0 else 0.0

    @property
    def loadgen_cpu_share(self) -> float:
        """The load generator's CPU time over the wall time: 1.0 is one whole core."""
        return self.loadgen_cpu_s / self.duration_s if self.duration_s > 0 else 0.0


class LoadError(Exception):
    """The load generator itself failed (not the system under test)."""


def run_load(load: Load, *, generator: str, on_progress: Progress | None = None) -> LoadResult:
    if generator == "wrk":
        return run_wrk(load, on_progress=on_progress)
    if generator == "python":
        return run_python(load, on_progress=on_progress)
    raise ValueError(f"unknown load generator {generator!r}; expected wrk or python")


def run_wrk(load: Load, *, on_progress: Progress | None = None) -> LoadResult:
    """One wrk thread (far below a core at the rates measured here); its CPU comes from wait4's rusage."""
    env = {
        **os.environ,
        "BENCH_BODY_FILE": str(load.body_file),
        "BENCH_AUTH": load.auth or "",
        "BENCH_MAX_REQUESTS": str(load.max_requests),
        "BENCH_PROGRESS_EVERY": str(PROGRESS_EVERY if on_progress else 0),
    }
    command = ["wrk", "-t1", f"-c{load.clients}", f"-d{max(1, math.ceil(load.duration_s))}s"]
    command += [f"--timeout={max(1, math.ceil(load.timeout_s))}s", "-s", str(WRK_SCRIPT), load.url]
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, text=True, start_new_session=True
    )
    # wrk stops on its own at -d; this only fires if it hangs.
    watchdog = threading.Timer(load.duration_s + load.timeout_s + 30, signal_group, (process.pid, signal.SIGKILL))
    watchdog.start()
    summary, other = None, []
    try:
        assert process.stdout is not None
        for line in process.stdout:
            if line.startswith("BENCH_CAP_REACHED"):
                process.send_signal(signal.SIGINT)  # wrk then ends the run and prints its summary
            elif line.startswith("BENCH_PROGRESS") and on_progress is not None:
                on_progress(int(line.split()[1]))
            elif line.startswith("BENCH_RESULT"):
                summary = json.loads(line.partition(" ")[2])
            else:
                other.append(line)
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
    finally:
        watchdog.cancel()
        if process.returncode is None:
            signal_group(process.pid, signal.SIGKILL)
            process.wait()
    if summary is None:
        raise LoadError(f"wrk exited with {process.returncode} and no summary:\n{''.join(other[-20:])}")
    errors = summary["errors"]
    failed_answers = errors["status"]
    return LoadResult(
        requests=summary["requests"] - failed_answers,
        errors=failed_answers + errors["connect"] + errors["read"] + errors["write"] + errors["timeout"],
        duration_s=summary["duration_us"] / 1e6,
        p50_ms=summary["latency_us"]["p50"] / 1000,
        p99_ms=summary["latency_us"]["p99"] / 1000,
        loadgen_cpu_s=usage.ru_utime + usage.ru_stime,
        generator="wrk",
    )


def run_python(load: Load, *, on_progress: Progress | None = None) -> LoadResult:
    """The aiohttp generator, for machines without wrk (CI). It costs far more CPU than wrk, on the same cores."""
    cpu_before = resource.getrusage(resource.RUSAGE_SELF)
    started = time.perf_counter()
    latencies, errors = run_async(python_load(load, on_progress))
    duration = time.perf_counter() - started
    cpu_after = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (cpu_after.ru_utime - cpu_before.ru_utime) + (cpu_after.ru_stime - cpu_before.ru_stime)
    ordered = sorted(latencies)
    return LoadResult(
        requests=len(ordered),
        errors=errors,
        duration_s=duration,
        p50_ms=percentile(ordered, 50),
        p99_ms=percentile(ordered, 99),
        loadgen_cpu_s=cpu,
        generator="python",
    )


def run_async(coroutine: Coroutine[Any, Any, T]) -> T:
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coroutine)
    return uvloop.run(coroutine)


def headers_for(auth: str | None) -> dict[str, str]:
    headers = {"content-type": "application/json"}
    if auth:
        headers["authorization"] = f"Bearer {auth}"
    return headers


def is_complete(status: int, body: bytes, *, stream: bool) -> bool:
    """A 2xx, and for a stream its [DONE] event (a mid-stream error event ends a stream without one)."""
    return 200 <= status < 300 and (not stream or body.rstrip().endswith(b"data: [DONE]"))


async def python_load(load: Load, on_progress: Progress | None) -> tuple[array[float], int]:
    body = load.body_file.read_bytes()
    headers = headers_for(load.auth)
    latencies: array[float] = array("d")
    errors = issued = 0
    deadline = time.perf_counter() + load.duration_s
    connector = aiohttp.TCPConnector(limit=load.clients)
    timeout = aiohttp.ClientTimeout(total=load.timeout_s)

    async def client(session: aiohttp.ClientSession) -> None:
        nonlocal errors, issued
        while issued < load.max_requests and time.perf_counter() < deadline:
            issued += 1
            start = time.perf_counter()
            try:
                async with session.post(load.url, data=body, headers=headers) as response:
                    ok = is_complete(response.status, await response.read(), stream=load.stream)
            except (aiohttp.ClientError, TimeoutError):
                ok = False
            if not ok:
                errors += 1
                continue
            latencies.append((time.perf_counter() - start) * 1000)
            if on_progress is not None and len(latencies) % PROGRESS_EVERY == 0:
                on_progress(len(latencies))

    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        await asyncio.gather(*(client(session) for _ in range(load.clients)))
    return latencies, errors


@dataclass(frozen=True, slots=True)
class TtftResult:
    requests: int
    errors: int
    p50_ms: float
    p99_ms: float


def measure_ttft(url: str, body_file: Path, auth: str | None, *, requests: int, warmup: int) -> TtftResult:
    """Time to first token at one client: from sending the request to reading the first `data:` event."""
    return run_async(ttft_client(url, body_file.read_bytes(), headers_for(auth), requests=requests, warmup=warmup))


async def ttft_client(url: str, body: bytes, headers: dict[str, str], *, requests: int, warmup: int) -> TtftResult:
    samples: list[float] = []
    errors = 0
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1), timeout=timeout) as session:
        for i in range(warmup + requests):
            start = time.perf_counter()
            first: float | None = None
            try:
                async with session.post(url, data=body, headers=headers) as response:
                    rest = bytearray()
                    async for line in response.content:
                        if first is None and line.startswith(b"data:"):
                            first = time.perf_counter() - start
                        rest += line
                    ok = first is not None and is_complete(response.status, bytes(rest), stream=True)
            except (aiohttp.ClientError, TimeoutError):
                ok = False
            if not ok:
                errors += 1
            elif i >= warmup and first is not None:
                samples.append(first * 1000)
    samples.sort()
    return TtftResult(len(samples), errors, percentile(samples, 50), percentile(samples, 99))


def percentile(ordered: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of an ascending sequence; NaN when it is empty."""
    if not ordered:
        return math.nan
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q / 100 * len(ordered)) - 1))]
