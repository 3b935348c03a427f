"""The kill switch (suspend a key's or everyone's tool calls) and the signed approval webhooks."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import orjson
import pytest
from aiohttp import web

from gateway.approvals.webhooks import SIGNATURE_HEADER, sign, verify
from gateway.config import GatewayConfig
from tests.approvals.conftest import TOOLS, bearer, create_key, tool_call, tool_reply, write_policy
from tests.conftest import AUTH, MakeConfig
from tests.fake_upstream import FakeUpstream

SECRET = "whsec-test-0123456789abcdef"


def ask(**extra: object) -> dict[str, object]:
    return {"model": "gpt-test", "messages": [{"role": "user", "content": "refund"}], "tools": TOOLS, **extra}


class Receiver:
    """A webhook receiver on 127.0.0.1 that checks signatures like a real one would."""

    def __init__(self) -> None:
        self.events: list[dict[str, object]] = []
        self.valid: list[bool] = []
        self.fail_first = 0
        self.arrived = asyncio.Event()

    async def handle(self, request: web.Request) -> web.Response:
        if self.fail_first:
            self.fail_first -= 1
            return web.Response(status=503)
        body = await request.read()
        self.valid.append(verify(SECRET, request.headers[SIGNATURE_HEADER], body))
        self.events.append(orjson.loads(body))
        self.arrived.set()
        return web.Response(status=204)

    async def wait_for(self, count: int) -> None:
        async with asyncio.timeout(10):
            while len(self.events) < count:
                self.arrived.clear()
                await self.arrived.wait()


@pytest.fixture
async def receiver() -> AsyncIterator[tuple[Receiver, str]]:
    hook = Receiver()
    app = web.Application()
    app.router.add_post("/hook", hook.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield hook, f"http://127.0.0.1:{port}/hook"
    await runner.cleanup()


@pytest.fixture
def config(make_config: MakeConfig, tmp_path: Path, receiver: tuple[Receiver, str]) -> GatewayConfig:
    folder = write_policy(tmp_path / "policies")
    webhook = {"url": receiver[1], "secret": SECRET}
    return make_config(policies=str(folder), approvals={"webhooks": [webhook], "sweep_interval_s": 0.1})


async def test_suspending_a_key_denies_its_calls_and_cancels_its_open_approvals(
    client: httpx.AsyncClient, upstream: FakeUpstream
) -> None:
    agent, other = await create_key(client, "agent"), await create_key(client, "other")
    upstream.script(tool_reply(tool_call("refund", {"order_id": "1", "amount": 900})))
    held = await client.post("/v1/chat/completions", headers=bearer(agent), json=ask())
    approval_id = held.json()["gateway"]["tool_calls"][0]["approval"]["id"]

    r = await client.post(
        "/admin/tool_suspensions", headers=AUTH, json={"key_id": agent["id"], "reason": "incident 42"}
    )
    assert r.status_code == 201 and r.json()["cancelled_approvals"] == 1
    state = await client.get(f"/v1/approvals/{approval_id}", headers=bearer(agent))
    assert state.json()["status"] == "cancelled" and state.json()["comment"] == "incident 42"

    small = tool_call("refund", {"order_id": "1", "amount": 5})
    upstream.script(tool_reply(small), tool_reply(small))
    denied = await client.post("/v1/chat/completions", headers=bearer(agent), json=ask())
    (report,) = denied.json()["gateway"]["tool_calls"]
    assert report["rule"] == "kill-switch" and "incident 42" in report["message"]
    passed = await client.post("/v1/chat/completions", headers=bearer(other), json=ask())
    assert passed.json()["choices"][0]["message"]["tool_calls"] == [small]  # other keys are unaffected

    lifted = await client.delete(f"/admin/tool_suspensions/key:{agent['id']}", headers=AUTH)
    assert lifted.status_code == 200
    upstream.script(tool_reply(small))
    again = await client.post("/v1/chat/completions", headers=bearer(agent), json=ask())
    assert again.json()["choices"][0]["message"]["tool_calls"] == [small]


async def test_suspending_everyone_and_who_may_do_it(client: httpx.AsyncClient, upstream: FakeUpstream) -> None:
    agent = await create_key(client, "agent")
    refused = await client.post("/admin/tool_suspensions", headers=bearer(agent), json={"all": True})
    assert refused.status_code == 403
    both = await client.post("/admin/tool_suspensions", headers=AUTH, json={"all": True, "key_id": agent["id"]})
    assert both.status_code == 400
    assert (await client.post("/admin/tool_suspensions", headers=AUTH, json={"all": True})).status_code == 201
    listed = await client.get("/admin/tool_suspensions", headers=AUTH)
    assert [s["scope"] for s in listed.json()["data"]] == ["all"]
    upstream.script(tool_reply(tool_call("refund", {"order_id": "1", "amount": 5})))
    r = await client.post("/v1/chat/completions", headers=bearer(agent), json=ask())
    assert r.json()["gateway"]["tool_calls"][0]["rule"] == "kill-switch"
    resumed = await client.post("/v1/chat/completions", headers=bearer(agent), json=ask(resume_approvals=["apr_x"]))
    assert resumed.status_code == 403  # nothing is released while suspended
    assert (await client.delete("/admin/tool_suspensions/all", headers=AUTH)).status_code == 200
    assert (await client.delete("/admin/tool_suspensions/all", headers=AUTH)).status_code == 404


async def test_webhooks_are_signed_and_sent_on_created_and_decided(
    client: httpx.AsyncClient, upstream: FakeUpstream, receiver: tuple[Receiver, str]
) -> None:
    hook, _ = receiver
    hook.fail_first = 1  # the first delivery fails and is retried
    agent, approver = await create_key(client, "agent"), await create_key(client, "alice", role="approver")
    upstream.script(tool_reply(tool_call("refund", {"order_id": "1", "amount": 900})))
    r = await client.post("/v1/chat/completions", headers=bearer(agent), json=ask())
    approval_id = r.json()["gateway"]["tool_calls"][0]["approval"]["id"]
    await client.post(f"/v1/approvals/{approval_id}/approve", headers=bearer(approver), json={"comment": "ok"})
    await hook.wait_for(2)
    assert [e["type"] for e in hook.events] == ["approval.created", "approval.approved"]
    assert hook.valid == [True, True]
    data = hook.events[1]["data"]
    assert data["id"] == approval_id and data["status"] == "approved" and data["comment"] == "ok"  # type: ignore[index]
    assert data["tool_call"]["function"]["name"] == "refund"  # type: ignore[index]


def test_signature_rejects_tampering_and_replays() -> None:
    body = b'{"type":"approval.created"}'
    header = sign(SECRET, 1_800_000_000, body)
    assert verify(SECRET, header, body, now=1_800_000_010)
    assert not verify(SECRET, header, body + b" ", now=1_800_000_010)
    assert not verify("another-secret", header, body, now=1_800_000_010)
    assert not verify(SECRET, header, body, now=1_800_000_000 + 301)  # stale: a replay
    assert not verify(SECRET, "v1=abc", body)
