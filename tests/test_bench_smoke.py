"""The benchmark script cannot rot: `bench/run.py --quick` runs end to end (a few hundred requests, gateway only);
the soak's pass/fail rule holds."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

from bench.soak import RssSample, fit_trend, soak_failures

ROOT = Path(__file__).resolve().parent.parent
EXPECTED_CELLS = {
    (scenario, stream, clients)
    for scenario in ("gateway bare", "gateway full")
    for stream in ("no", "yes")
    for clients in ("1", "10")
}


def table_rows(output: str) -> dict[tuple[str, str, str], dict[str, str]]:
    """The main Markdown table's data rows, keyed by (scenario, stream, clients), each as {column: cell}."""
    lines = output.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("| scenario |"))
    header = [cell.strip() for cell in lines[start].strip("|").split("|")]
    rows = {}
    for line in lines[start + 2 :]:
        if not line.startswith("| "):
            break
        cells = dict(zip(header, (cell.strip() for cell in line.strip("|").split("|")), strict=True))
        rows[(cells["scenario"], cells["stream"], cells["clients"])] = cells
    return rows


def test_bench_quick_run_measures_bare_and_full_governance_without_errors() -> None:
    """About 5 s: starts the fake upstream and two real gateway processes, sends ~500 requests through them."""
    result = subprocess.run(
        [sys.executable, "bench/run.py", "--quick"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    rows = table_rows(result.stdout)
    assert set(rows) == EXPECTED_CELLS, result.stdout
    for cell, row in rows.items():
        assert float(row["req/s"].replace(",", "")) > 0, cell
        assert row["errors"] == "0", cell
        assert row["loadgen CPU"].endswith("(python)"), cell  # CI has no wrk
    assert rows[("gateway full", "yes", "1")]["TTFT p50 / p99 ms"] != "–"


def test_soak_fails_on_growth_and_on_a_peak_over_the_budget() -> None:
    """A soak passes only flat and under the per-process budget: a run that grew to 255 MB before a late full
    collection flattened it passed on its trend alone until the budget was checked too."""
    args = argparse.Namespace(soak_max_growth=5.0, soak_max_rss=150.0, soak_settle=90.0)

    def failures(rss: list[float]) -> list[str]:
        samples = [RssSample(i, i * 1000, mb, mb) for i, mb in enumerate(rss)]
        return soak_failures(len(rss) * 1000, len(rss) * 1000, 0, samples, fit_trend(samples, settle_s=90.0), args)

    assert failures([120.0] * 300) == []
    assert failures([120.0 + i * 0.1 for i in range(300)]) == ["RSS grows +10.00 MB per 100k requests (limit 5)"]
    assert failures([117.0 + i for i in range(140)] + [255.0] * 160) == ["a process reached 256.0 MB (limit 150)"]
