"""Two gateway instances on one Postgres: decisions and releases race safely, waiters and the kill switch see
what the other instance did."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from pathlib import Path

import httpx
import pytest

from gateway.app import create_app
from tests.approvals.conftest import TOOLS, bearer, tool_call, tool_reply, write_policy
from tests.conftest import AUTH, MakeConfig
from tests.fake_upstream import FakeUpstream


@pytest.fixture
async def pair(make_config: MakeConfig, tmp_path: Path, postgres_url: str) -> AsyncIterator[list[httpx.AsyncClient]]:
    folder = write_policy(tmp_path / "policies")
    clients = []
    async with AsyncExitStack() as stack:
        for name in ("a", "b"):
            config = make_config(
                policies=str(folder), database_url=postgres_url, spool_dir=str(tmp_path / name / "spool")
            )
            app = create_app(config)
            await stack.enter_async_context(app.router.lifespan_context(app))
            client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=f"http://{name}")
            clients.append(await stack.enter_async_context(client))
        yield clients


async def key(client: httpx.AsyncClient, others: list[httpx.AsyncClient], name: str, role: str) -> dict[str, str]:
    r = await client.post("/admin/keys", headers=AUTH, json={"name": name, "role": role})
    secret = {"authorization": f"Bearer {r.json()['key']}", "id": r.json()["id"]}
    for other in others:  # the other instance polls for new keys every 0.5 s
        async with asyncio.timeout(3):
            while (await other.get("/v1/models", headers=bearer(secret))).status_code != 200:
                await asyncio.sleep(0.05)
    return secret


async def held(client: httpx.AsyncClient, upstream: FakeUpstream, agent: dict[str, str]) -> str:
    upstream.script(tool_reply(tool_call("refund", {"order_id": "1", "amount": 900})))
    body = {"model": "gpt-test", "messages": [{"role": "user", "content": "refund"}], "tools": TOOLS}
    r = await client.post("/v1/chat/completions", headers=bearer(agent), json=body)
    return str(r.json()["gateway"]["tool_calls"][0]["approval"]["id"])


async def test_racing_decisions_and_resumes_have_one_winner(
    pair: list[httpx.AsyncClient], upstream: FakeUpstream
) -> None:
    a, b = pair
    agent = await key(a, [b], "agent", "member")
    approvers = [await key(a, [b], f"approver-{i}", "approver") for i in range(2)]
    approval_id = await held(a, upstream, agent)

    decisions = await asyncio.gather(*[
        (a if i % 2 else b).post(f"/v1/approvals/{approval_id}/{'approve' if i % 3 else 'deny'}",
                                 headers=bearer(approvers[i % 2]), json={"comment": f"decision {i}"})
        for i in range(10)
    ])  # fmt: skip
    assert sorted(r.status_code for r in decisions) == [200] + [409] * 9
    approval_id = await held(a, upstream, agent)  # a second one, approved by racing approvers only
    decisions = await asyncio.gather(*[
        (a if i % 2 else b).post(f"/v1/approvals/{approval_id}/approve", headers=bearer(approvers[i % 2]))
        for i in range(10)
    ])  # fmt: skip
    assert sorted(r.status_code for r in decisions) == [200] + [409] * 9

    resume = {"model": "gpt-test", "messages": [{"role": "user", "content": "go"}], "resume_approvals": [approval_id]}
    releases = await asyncio.gather(
        *[(a if i % 2 else b).post("/v1/chat/completions", headers=bearer(agent), json=resume) for i in range(10)]
    )
    assert sorted(r.status_code for r in releases) == [200] + [409] * 9


async def test_a_waiter_on_one_instance_hears_a_decision_made_on_the_other(
    pair: list[httpx.AsyncClient], upstream: FakeUpstream
) -> None:
    a, b = pair
    agent = await key(a, [b], "agent", "member")
    approver = await key(a, [b], "approver", "approver")
    approval_id = await held(a, upstream, agent)

    async def approve_later() -> float:
        await asyncio.sleep(0.3)
        await a.post(f"/v1/approvals/{approval_id}/approve", headers=bearer(approver))
        return time.monotonic()

    waited, decided_at = await asyncio.gather(
        b.get(f"/v1/approvals/{approval_id}/wait", headers=bearer(agent), params={"timeout": 10}), approve_later()
    )
    assert waited.json()["status"] == "approved"
    assert time.monotonic() - decided_at < 1.5  # the waiter re-reads the row every second


async def test_the_kill_switch_reaches_the_other_instance(
    pair: list[httpx.AsyncClient], upstream: FakeUpstream
) -> None:
    a, b = pair
    agent = await key(a, [b], "agent", "member")
    await a.post("/admin/tool_suspensions", headers=AUTH, json={"all": True, "reason": "drill"})
    body = {"model": "gpt-test", "messages": [{"role": "user", "content": "refund"}], "tools": TOOLS}
    started = time.monotonic()
    while True:
        upstream.script(tool_reply(tool_call("refund", {"order_id": "1", "amount": 5})))
        r = await b.post("/v1/chat/completions", headers=bearer(agent), json=body)
        if "gateway" in r.json():
            assert r.json()["gateway"]["tool_calls"][0]["rule"] == "kill-switch"
            break
        assert time.monotonic() - started < 2.0, "instance b still released tool calls 2 s after the kill switch"
        await asyncio.sleep(0.1)
