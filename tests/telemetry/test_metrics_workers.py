"""Metrics across worker processes: a scrape of any process reports the sum over all of them."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from gateway.telemetry.multiprocess import VARIABLE, multiprocess_metrics
from tests.conftest import AUTH, chat
from tests.servers import ServedGateway

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]
DEMO_200 = frozenset({"model": "demo", "operation": "chat", "status_code": "200", "stream": "false"}.items())
OTHER_404 = frozenset({"model": "other", "operation": "chat", "status_code": "404", "stream": "false"}.items())
DEMO_CHAT = frozenset({"model": "demo", "operation": "chat"}.items())


def scrape(url: str) -> Samples:
    r = httpx.get(f"{url}/metrics", timeout=5)
    assert r.status_code == 200, r.text
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(r.text)
        for s in family.samples
    }


def served_gateway(folder: Path, env: dict[str, str]) -> ServedGateway:
    folder.mkdir()
    config = folder / "gateway.yaml"
    config.write_text(
        f"""
models:
  - {{name: demo, model: fake/echo}}
database_url: sqlite:///{folder / "gateway.db"}
spool_dir: {folder / "spool"}
"""
    )
    return ServedGateway(config, env=env)


def test_two_processes_sharing_a_multiproc_dir_report_the_sum(tmp_path: Path) -> None:
    """Two real `gateway serve` processes (as `--workers 2` runs them), started in parallel: about 1.5 s."""
    shared = tmp_path / "prometheus"
    shared.mkdir()
    servers = [served_gateway(tmp_path / name, {VARIABLE: str(shared)}) for name in ("a", "b")]
    with ThreadPoolExecutor(2) as pool:
        list(pool.map(ServedGateway.start, servers))
    try:
        a, b = (server.url for server in servers)
        for url, count in ((a, 3), (b, 2)):
            for _ in range(count):
                r = httpx.post(f"{url}/v1/chat/completions", headers=AUTH, json=chat("demo", "two words"), timeout=5)
                assert r.status_code == 200
        assert httpx.post(f"{b}/v1/chat/completions", headers=AUTH, json=chat("gpt-nope"), timeout=5).status_code == 404

        for url in (a, b):
            samples = scrape(url)
            assert samples[("gateway_requests_total", DEMO_200)] == 5
            assert samples[("gateway_requests_total", OTHER_404)] == 1
            assert samples[("gateway_request_duration_seconds_count", DEMO_CHAT)] == 5
            assert samples[("gateway_request_duration_seconds_bucket", DEMO_CHAT | {("le", "+Inf")})] == 5
            assert samples[("gateway_tokens_total", frozenset({"model": "demo", "kind": "output"}.items()))] == 10
            assert samples[("gateway_overhead_seconds_count", frozenset())] == 6
        assert len(list(shared.glob("counter_*.db"))) == 2  # one file of values per process
    finally:
        for server in servers:
            server.stop()


def test_serve_with_two_workers_reports_every_call_on_every_scrape(tmp_path: Path) -> None:
    """`gateway serve --workers 2` for real (needs the local Redis): about 2.5 s. Which worker answers a call or a
    scrape is the kernel's choice, so every scrape must already report all calls."""
    folder = tmp_path / "served"
    server = served_gateway(folder, {"TMPDIR": str(tmp_path)})
    server.config.write_text(server.config.read_text() + "redis_url: redis://127.0.0.1:6379/0\n")
    server.workers = 2
    server.start()
    try:
        for _ in range(20):  # a new connection each time, so both workers get some
            r = httpx.post(f"{server.url}/v1/chat/completions", headers=AUTH, json=chat("demo"), timeout=5)
            assert r.status_code == 200
        assert [scrape(server.url)[("gateway_requests_total", DEMO_200)] for _ in range(6)] == [20] * 6
        assert len(list(tmp_path.glob("gateway-metrics-*"))) == 1  # the run's own directory
    finally:
        server.stop()
    assert not list(tmp_path.glob("gateway-metrics-*"))  # removed when the server stopped


def test_serve_with_workers_gets_a_fresh_dir_removed_afterwards(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(VARIABLE, raising=False)
    with multiprocess_metrics(2) as folder:
        assert folder is not None and os.environ[VARIABLE] == folder
        assert os.path.isdir(folder) and not os.listdir(folder)
    assert VARIABLE not in os.environ and not os.path.exists(folder)
    with multiprocess_metrics(1) as folder:
        assert folder is None and VARIABLE not in os.environ


def test_serve_keeps_a_dir_the_operator_chose(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / "counter_1.db").write_bytes(b"")
    monkeypatch.setenv(VARIABLE, str(tmp_path))
    with multiprocess_metrics(2) as folder:
        assert folder == str(tmp_path)
    assert os.environ[VARIABLE] == str(tmp_path) and (tmp_path / "counter_1.db").exists()
