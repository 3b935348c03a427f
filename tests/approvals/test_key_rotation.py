"""Approvals and tool suspensions are bound to a key's id: they survive the key's rotation unchanged."""

from __future__ import annotations

import httpx

from tests.approvals.conftest import TOOLS, bearer, create_key, tool_call, tool_reply
from tests.conftest import AUTH
from tests.fake_upstream import FakeUpstream


def ask(**extra: object) -> dict[str, object]:
    return {"model": "gpt-test", "messages": [{"role": "user", "content": "refund"}], "tools": TOOLS, **extra}


async def rotate(client: httpx.AsyncClient, key: dict[str, str]) -> dict[str, str]:
    """Rotates by the key's current prefix; returns the same key with its new secret."""
    prefix = (await client.get(f"/admin/keys/{key['id']}", headers=AUTH)).json()["prefix"]
    rotated = (await client.post(f"/admin/keys/{prefix}/rotate", headers=AUTH)).json()
    assert rotated["id"] == key["id"] and rotated["prefix"] != prefix
    return {"authorization": f"Bearer {rotated['key']}", "id": rotated["id"]}


async def test_approval_stays_the_requesters_across_rotation(client: httpx.AsyncClient, upstream: FakeUpstream) -> None:
    agent = await create_key(client, "agent", role="approver")
    approver = await create_key(client, "alice", role="approver")
    call = tool_call("refund", {"order_id": "42", "amount": 500}, "call_big")
    upstream.script(tool_reply(call))
    held = await client.post("/v1/chat/completions", headers=bearer(agent), json=ask())
    approval_id = held.json()["gateway"]["tool_calls"][0]["approval"]["id"]

    agent = await rotate(client, agent)
    state = await client.get(f"/v1/approvals/{approval_id}", headers=bearer(agent))
    assert state.status_code == 200 and state.json()["status"] == "pending"  # still readable by the requester
    own = await client.post(f"/v1/approvals/{approval_id}/approve", headers=bearer(agent))
    assert own.status_code == 403 and own.json()["error"]["code"] == "self_approval"  # and still its own
    decided = await client.post(f"/v1/approvals/{approval_id}/approve", headers=bearer(approver), json={})
    assert decided.status_code == 200 and decided.json()["status"] == "approved"

    approver = await rotate(client, approver)  # the decider's rotation changes nothing either
    resumed = await client.post("/v1/chat/completions", headers=bearer(agent), json=ask(resume_approvals=[approval_id]))
    assert resumed.status_code == 200, resumed.text
    assert resumed.json()["choices"][0]["message"]["tool_calls"] == [call]


async def test_tool_suspension_holds_across_rotation_and_lifts_by_any_prefix(
    client: httpx.AsyncClient, upstream: FakeUpstream
) -> None:
    agent = await create_key(client, "agent")
    old_prefix = (await client.get(f"/admin/keys/{agent['id']}", headers=AUTH)).json()["prefix"]
    r = await client.post("/admin/tool_suspensions", headers=AUTH, json={"key_id": old_prefix, "reason": "incident"})
    assert r.status_code == 201 and r.json()["scope"] == f"key:{agent['id']}"

    agent = await rotate(client, agent)
    small = tool_call("refund", {"order_id": "1", "amount": 5})
    upstream.script(tool_reply(small))
    denied = await client.post("/v1/chat/completions", headers=bearer(agent), json=ask())
    assert denied.json()["gateway"]["tool_calls"][0]["rule"] == "kill-switch"

    lifted = await client.delete(f"/admin/tool_suspensions/key:{old_prefix}", headers=AUTH)
    assert lifted.status_code == 200 and lifted.json()["scope"] == f"key:{agent['id']}"
    upstream.script(tool_reply(small))
    again = await client.post("/v1/chat/completions", headers=bearer(agent), json=ask())
    assert again.json()["choices"][0]["message"]["tool_calls"] == [small]
    unknown = await client.delete("/admin/tool_suspensions/key:sk-gw-nokey0", headers=AUTH)
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "key_not_found"
