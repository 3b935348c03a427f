"""The eval runner's benchmark (issue 18's targets): 1,000 cases with deterministic assertions against a fake model,
in process, end to end (`gateway eval run`, suite loading and gateway start included); and the runner's own CPU per
case beyond the call, measured as a run through a client that answers at once without any gateway (a no-op client)
against the same run through the real in-process pipeline. `--similar N` adds N `similar` assertions (local MiniLM).

    .venv/bin/python bench/evals_bench.py                 # 1,000 cases
    .venv/bin/python bench/evals_bench.py --cases 200 --similar 300
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import sys
import tempfile
import time
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: import `gateway` and `bench` from the repository root
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

from gateway.evals.answers import fill_from_body  # noqa: E402
from gateway.evals.observed import Observed  # noqa: E402

CONFIG = """
models:
  - {{name: demo, model: fake/echo}}
database_url: sqlite:///{folder}/gateway.db
spool_dir: {folder}/spool
"""
CASE = """  - id: case-{i:04d}
    input: "Ticket {i}: the printer on floor {floor} is out of toner again"
    assert:
      - {{type: contains, value: "printer"}}
      - {{type: icontains, value: "TONER"}}
      - {{type: regex, value: "floor [0-9]+"}}
      - {{type: not-contains, value: "password"}}
      - {{type: word-count, min: 3, max: 40}}
"""
SIMILAR = """  - id: similar-{i:04d}
    input: "The invoice {i} was paid twice by mistake"
    assert: [{{type: similar, value: "a duplicate payment of invoice {i}", threshold: 0.3}}]
"""


def write_suite(folder: Path, cases: int, similar: int) -> Path:
    body = "".join(CASE.format(i=i, floor=i % 9) for i in range(cases))
    body += "".join(SIMILAR.format(i=i) for i in range(similar))
    path = folder / "bench-suite.yaml"
    path.write_text(f"name: bench\ntargets: [demo]\ncases:\n{body}")
    return path


class NoopClient:
    """Answers every call at once with the echo a fake model would give: the runner's work, and nothing else."""

    scope = "noop"
    needs_record = False

    @asynccontextmanager
    async def run(self, run_id: str) -> Any:
        yield

    async def call(self, request: dict[str, Any]) -> Observed:
        text = request["messages"][-1]["content"]
        observed = Observed(request_id="req_noop", status=200)
        fill_from_body(
            observed,
            {
                "choices": [{"message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 9, "completion_tokens": 9},
            },
        )
        return observed

    async def embed(self, model: str, texts: list[str]) -> list[list[float]]:
        raise NotImplementedError

    async def complete(self, model: str, messages: list[dict[str, Any]]) -> tuple[str, float]:
        raise NotImplementedError


async def timed_run(suite: Any, client: Any, concurrency: int) -> tuple[dict[str, Any], float, float]:
    from gateway.evals.cache import ResponseCache
    from gateway.evals.runner import RunOptions, run_suite

    wall, cpu = time.perf_counter(), time.process_time()
    result = await run_suite(suite, client, ResponseCache(enabled=False), RunOptions(concurrency=concurrency))
    return result, time.perf_counter() - wall, time.process_time() - cpu


async def in_process(config_path: Path, suite: Any, concurrency: int) -> tuple[dict[str, Any], float, float]:
    from gateway.evals.clients import InProcessClient
    from gateway.settings import Settings

    config = Settings(config=config_path).resolve()
    async with InProcessClient(config) as client:
        await timed_run(suite, client, concurrency)  # warm: first calls, the local model loaded
    async with InProcessClient(config) as client:  # a new client: its embeddings are not remembered yet
        return await timed_run(suite, client, concurrency)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", type=int, default=1000)
    parser.add_argument("--similar", type=int, default=0, help="cases with a `similar` assertion (local MiniLM)")
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()
    from gateway.cli import main as gateway_main
    from gateway.evals.spec import load_suite

    with tempfile.TemporaryDirectory(prefix="evals-bench-") as tmp:
        folder = Path(tmp)
        config = folder / "gateway.yaml"
        config.write_text(CONFIG.format(folder=folder))
        suite_path = write_suite(folder, args.cases, args.similar)
        total = args.cases + args.similar

        # 1. End to end, as CI runs it: a fresh process's work (suite load, gateway start, run, reports).
        command = ["eval", "run", str(suite_path), "--config", str(config), "--no-cache", "--no-store", "--quiet",
                   "--concurrency", str(args.concurrency), "--json", str(folder / "out.json")]  # fmt: skip
        wall, cpu = time.perf_counter(), time.process_time()
        with contextlib.redirect_stdout(io.StringIO()):
            code = gateway_main(command)
        e2e_wall, e2e_cpu = time.perf_counter() - wall, time.process_time() - cpu

        # 2. The runner alone (no-op client) against the runner with the real pipeline, warm, same cases.
        suite = load_suite(write_suite(folder, args.cases, 0))
        asyncio.run(timed_run(suite, NoopClient(), args.concurrency))  # warm
        noop, noop_wall, noop_cpu = asyncio.run(timed_run(suite, NoopClient(), args.concurrency))
        real, real_wall, real_cpu = asyncio.run(in_process(config, suite, args.concurrency))
        if args.similar:  # 3. `similar` alone, in process, the model loaded by the warm-up run
            similar_suite = load_suite(write_suite(folder, 0, args.similar))
            _, similar_wall, _ = asyncio.run(in_process(config, similar_suite, args.concurrency))

    print(f"cases: {total} ({args.cases} with 5 deterministic assertions, {args.similar} with `similar`), "
          f"concurrency {args.concurrency}, exit code {code}")  # fmt: skip
    print(f"end to end (gateway eval run, one process): {e2e_wall:.2f} s wall, {e2e_cpu:.2f} s CPU")
    n = args.cases
    print(f"warm in-process run ({n} cases): {real_wall:.2f} s wall, {real_cpu:.2f} s CPU, "
          f"{real_cpu / n * 1000:.3f} ms CPU per case ({real['counts']['passed']} passed)")  # fmt: skip
    print(
        f"runner alone (no-op client, {n} cases): {noop_wall:.3f} s wall, {noop_cpu:.3f} s CPU, "
        f"{noop_cpu / n * 1000:.3f} ms CPU per case, assertions included ({noop['counts']['passed']} passed)"
    )
    print(f"so the in-process call (full pipeline, fake model) takes {(real_cpu - noop_cpu) / n * 1000:.3f} ms CPU "
          f"per case, and the runner {noop_cpu / n * 1000:.3f} ms beyond it")  # fmt: skip
    if args.similar:
        print(f"`similar`: {args.similar} assertions in {similar_wall:.2f} s, warm, calls included "
              f"({args.similar / similar_wall:.0f} assertions/s)")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
