"""Real processes, real crashes: usage records survive SIGKILL, and two instances share one budget via Redis."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import AUTH, chat
from tests.servers import ServedGateway

PRICE = "price: {input_per_mtok: 0, output_per_mtok: 1000}"  # max_tokens=1 -> exactly $0.001 per request


def write_config(folder: Path, *, database_url: str, redis_url: str | None = None, model: str = "fake/echo") -> Path:
    config = folder / "gateway.yaml"
    config.write_text(
        f"""
models:
  - name: priced
    model: {model}
    {PRICE}
database_url: {database_url}
spool_dir: {folder / "spool"}
{"redis_url: " + redis_url if redis_url else ""}
"""
    )
    return config


def create_key(url: str, **spec: object) -> dict[str, object]:
    r = httpx.post(f"{url}/admin/keys", headers=AUTH, json={"name": "load", **spec}, timeout=10)
    assert r.status_code == 201, r.text
    return dict(r.json())


async def fire(
    urls: list[str], secret: str, count: int, *, concurrency: int, stop: asyncio.Event | None = None
) -> list[httpx.Response | Exception]:
    """`count` chat requests spread over the instances, `concurrency` at a time, until `stop` is set;
    transport errors are kept, not raised."""
    limits = httpx.Limits(max_connections=concurrency)
    results: list[httpx.Response | Exception] = []
    queue = iter(range(count))
    async with httpx.AsyncClient(limits=limits, timeout=10) as client:

        async def worker() -> None:
            for i in queue:
                if stop is not None and stop.is_set():
                    return
                try:
                    results.append(
                        await client.post(
                            f"{urls[i % len(urls)]}/v1/chat/completions",
                            headers={"authorization": f"Bearer {secret}"},
                            json=chat("priced", "hi", max_tokens=1),
                        )
                    )
                except httpx.TransportError as exc:
                    results.append(exc)

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return results


def test_sigkill_under_load_loses_no_received_usage_record_and_counts_none_twice(tmp_path: Path) -> None:
    """Takes about 3 s: two server starts and a second of load."""
    db_file = tmp_path / "gateway.db"
    config = write_config(tmp_path, database_url=f"sqlite:///{db_file}", model="fake/slow:5")
    server = ServedGateway(config).start()
    try:
        secret = str(create_key(server.url, budget=100)["key"])

        async def load_then_kill() -> list[httpx.Response | Exception]:
            stop = asyncio.Event()
            task = asyncio.create_task(fire([server.url], secret, 100_000, concurrency=8, stop=stop))
            await asyncio.sleep(1.0)
            await asyncio.to_thread(server.kill)
            stop.set()
            return await task

        results = asyncio.run(load_then_kill())
    finally:
        server.stop()
    received = [r.headers["x-request-id"] for r in results if isinstance(r, httpx.Response) and r.status_code == 200]
    assert len(received) > 50, "the load did not get going before the kill"

    restarted = ServedGateway(config).start()  # ships what the killed process left in its spool
    try:
        with sqlite3.connect(db_file) as connection:
            rows = connection.execute("SELECT request_id, cost_nanos FROM usage_records").fetchall()
        recorded = [request_id for request_id, _ in rows]
        assert set(received) <= set(recorded), f"{len(set(received) - set(recorded))} received responses lost"
        assert len(recorded) == len(set(recorded))
        budgets = httpx.get(f"{restarted.url}/admin/budgets", headers=AUTH).json()["data"]
        (budget,) = budgets
        assert budget["spent"] == pytest.approx(sum(cost for _, cost in rows) / 1e9)  # seeded once, from the rows
    finally:
        restarted.stop()


@pytest.mark.postgres
def test_two_instances_sharing_redis_and_postgres_never_overspend(tmp_path: Path, postgres_url: str) -> None:
    """Takes about 3 s: two servers; 200 concurrent requests against a budget that covers 50."""
    prefix_db = postgres_url.replace("postgresql://", "postgresql+psycopg://")
    first_dir, second_dir = tmp_path / "a", tmp_path / "b"
    first_dir.mkdir()
    second_dir.mkdir()
    redis_url = "redis://127.0.0.1:6379/0"
    first = ServedGateway(write_config(first_dir, database_url=prefix_db, redis_url=redis_url)).start()
    second = ServedGateway(write_config(second_dir, database_url=prefix_db, redis_url=redis_url)).start()
    try:
        created = create_key(first.url, budget=0.05)
        secret = str(created["key"])
        probe = {"authorization": f"Bearer {secret}"}
        deadline = time.monotonic() + 1.0
        while httpx.get(f"{second.url}/v1/models", headers=probe).status_code != 200:
            assert time.monotonic() < deadline, "the second instance did not learn the new key within 1 s"
            time.sleep(0.02)

        results = asyncio.run(fire([first.url, second.url], secret, 200, concurrency=200))
        statuses = [r.status_code for r in results if isinstance(r, httpx.Response)]
        assert len(statuses) == 200
        assert statuses.count(200) == 50 and statuses.count(429) == 150
        for server in (first, second):
            (budget,) = httpx.get(f"{server.url}/admin/budgets", headers=AUTH).json()["data"]
            assert (budget["spent"], budget["reserved"]) == (0.05, 0.0)

        httpx.post(f"{first.url}/admin/keys/{created['id']}/revoke", headers=AUTH).raise_for_status()
        revoked_at = time.monotonic()
        while httpx.get(f"{second.url}/v1/models", headers=probe).status_code != 401:
            assert time.monotonic() - revoked_at < 1.0, "a revoked key kept working on the other instance"
            time.sleep(0.02)
    finally:
        first.stop()
        second.stop()
