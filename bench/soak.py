"""Soak mode: N requests against full governance (or bare) at a fixed concurrency, JSON or streamed (`--soak-stream`:
the path with the most per-call state), RSS sampled every second. Fails if the second half of the run shows a
memory growth trend steeper than the allowed MB per 100k requests, or if any process goes over `--soak-max-rss`
(150 MB, the per-process budget) at any point: before 6d9ced9 a streamed soak grew to 255 MB, then flattened.

The first `--soak-settle` seconds (default 90) never count: the rate limiter's exact sliding window holds every
request of the last 60 s, so memory rightly grows until the window is full, then must stay flat.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from bench.loadgen import Load, run_load
from bench.proctree import sample_tree
from bench.scenarios import LABELS, Workspace, check_target, open_target, run_upstream, write_bodies


@dataclass(frozen=True, slots=True)
class RssSample:
    elapsed_s: float
    requests: int  # answered so far (from the load generator's progress reports)
    rss_total_mb: float
    rss_max_mb: float


@dataclass(frozen=True, slots=True)
class Trend:
    slope_mb_per_100k: float  # least-squares slope of total RSS over requests answered
    samples: int


def fit_trend(samples: Sequence[RssSample], *, settle_s: float, min_samples: int = 10) -> Trend | None:
    """Least-squares line of RSS against requests over the second half of the run (by requests answered),
    leaving out the first settle_s seconds; None if fewer than min_samples remain."""
    if not samples:
        return None
    half = samples[-1].requests / 2
    tail = [s for s in samples if s.requests >= half and s.elapsed_s >= settle_s]
    xs = [float(s.requests) for s in tail]
    if len(tail) < min_samples or max(xs) == min(xs):
        return None
    mean_x, mean_y = sum(xs) / len(xs), sum(s.rss_total_mb for s in tail) / len(tail)
    covariance = sum((x - mean_x) * (s.rss_total_mb - mean_y) for x, s in zip(xs, tail, strict=True))
    variance = sum((x - mean_x) ** 2 for x in xs)
    return Trend(covariance / variance * 100_000, len(tail))


class RssSampler:
    """A thread reading the server tree's RSS every `interval_s`, tagged with the progress reported so far."""

    def __init__(self, pid: int, *, interval_s: float = 1.0) -> None:
        self.pid = pid
        self.interval_s = interval_s
        self.requests = 0
        self.samples: list[RssSample] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)
        self._started = 0.0

    def progress(self, requests: int) -> None:
        self.requests = requests

    def __enter__(self) -> RssSampler:
        self._started = time.monotonic()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def take(self) -> None:
        tree = sample_tree(self.pid)
        elapsed = time.monotonic() - self._started
        self.samples.append(RssSample(elapsed, self.requests, tree.rss_total_mb, tree.rss_max_mb))

    def _run(self) -> None:
        self.take()
        while not self._stop.wait(self.interval_s):
            self.take()


def run_soak(args: argparse.Namespace, tmp: Path) -> int:
    total = args.soak
    timeout_s = args.soak_timeout or total / 200 + 60
    bodies = write_bodies(tmp)
    with run_upstream(tmp) as (upstream, base_url):
        space = Workspace.from_args(args, tmp, base_url, upstream.pid)
        with open_target(args.soak_scenario, space) as target:
            stream = args.soak_stream
            check_target(target, stream=stream)
            warmup = Load(target.url, bodies[stream], target.auth, args.soak_clients, 2, 2_000, stream)
            run_load(warmup, generator=args.loadgen)
            print(f"soak: {total:,} requests, {args.soak_clients} clients, at most {timeout_s:.0f} s", file=sys.stderr)
            load = Load(target.url, bodies[stream], target.auth, args.soak_clients, timeout_s, total, stream)
            with RssSampler(target.pid) as sampler:
                result = run_load(load, generator=args.loadgen, on_progress=sampler.progress)
                sampler.progress(result.requests)
                sampler.take()
    trend = fit_trend(sampler.samples, settle_s=args.soak_settle)
    failures = soak_failures(result.requests, total, result.errors, sampler.samples, trend, args)
    print(render_soak(result.requests, total, result.errors, result.duration_s, sampler.samples, trend, failures, args))
    return 1 if failures else 0


def soak_failures(
    done: int, total: int, errors: int, samples: Sequence[RssSample], trend: Trend | None, args: argparse.Namespace
) -> list[str]:
    """Why the soak failed, one reason each; empty when it passed. The exit code and the verdict both come from
    here."""
    reasons = []
    if trend is None:
        reasons.append(f"too few samples after {args.soak_settle:g} s and half-way to fit a trend; raise N")
    elif trend.slope_mb_per_100k > args.soak_max_growth:
        reasons.append(
            f"RSS grows {trend.slope_mb_per_100k:+.2f} MB per 100k requests (limit {args.soak_max_growth:g})"
        )
    if peak_mb(samples) > args.soak_max_rss:
        reasons.append(f"a process reached {peak_mb(samples):,.1f} MB (limit {args.soak_max_rss:g})")
    if done < total:
        reasons.append(f"incomplete: {done:,} of {total:,} requests within the time limit")
    if errors:
        reasons.append(f"{errors:,} errors")
    return reasons


def peak_mb(samples: Sequence[RssSample]) -> float:
    """The largest process's highest RSS: a trend that flattens out high (a full garbage collection arriving at
    last) is still a failure if it went over the per-process budget on the way."""
    return max((s.rss_max_mb for s in samples), default=0.0)


def render_soak(
    done: int,
    total: int,
    errors: int,
    duration_s: float,
    samples: Sequence[RssSample],
    trend: Trend | None,
    failures: Sequence[str],
    args: argparse.Namespace,
) -> str:
    first, last = samples[0], samples[-1]
    middle = min(samples, key=lambda s: abs(s.requests - done / 2))
    if failures:
        verdict = "**failed**: " + "; ".join(failures)
    else:
        assert trend is not None  # no trend is a failure
        verdict = f"passed: {trend.slope_mb_per_100k:+.2f} MB per 100k requests (limit {args.soak_max_growth:g})"
    low, high = min(s.rss_total_mb for s in samples), max(s.rss_total_mb for s in samples)
    rows = [
        ("requests answered", f"{done:,} of {total:,} in {duration_s:,.0f} s ({done / duration_s:,.0f} req/s)"),
        ("errors", f"{errors:,}"),
        ("RSS samples", f"{len(samples)} (every 1 s); trend fitted over the last {trend.samples if trend else 0}"),
        ("RSS total at start", f"{first.rss_total_mb:,.1f} MB (largest process {first.rss_max_mb:,.1f} MB)"),
        ("RSS total at half-way", f"{middle.rss_total_mb:,.1f} MB at {middle.requests:,} requests"),
        ("RSS total at end", f"{last.rss_total_mb:,.1f} MB (largest process {last.rss_max_mb:,.1f} MB)"),
        ("RSS min / max", f"{low:,.1f} / {high:,.1f} MB"),
        ("verdict", verdict),
    ]
    head = f"Soak: {LABELS[args.soak_scenario]}, {'stream' if args.soak_stream else 'non-stream'}, "
    head += f"{args.soak_clients} clients, workers {args.workers}"
    head += f", loadgen {args.loadgen}"
    return "\n".join([head, "", "| | |", "|---|---|", *(f"| {k} | {v} |" for k, v in rows)])
