"""Tool rules on answers through the app: allowed calls pass, denied ones are explained, gated ones held."""

from __future__ import annotations

import httpx
import orjson
import pytest
from fastapi import FastAPI
from sqlmodel import select

from gateway.storage.tables import ApprovalRequest, UsageRecord
from tests.approvals.conftest import TOOLS, bearer, create_key, text_reply, tool_call, tool_reply
from tests.fake_upstream import FakeUpstream


def ask(text: str = "refund order 42", **extra: object) -> dict[str, object]:
    return {"model": "gpt-test", "messages": [{"role": "user", "content": text}], "tools": TOOLS, **extra}


async def test_allowed_call_passes_unchanged(client: httpx.AsyncClient, upstream: FakeUpstream, app: FastAPI) -> None:
    agent = await create_key(client, "agent")
    call = tool_call("refund", {"order_id": "42", "amount": 50})
    upstream.script(tool_reply(call))
    r = await client.post("/v1/chat/completions", headers=bearer(agent), json=ask())
    assert r.status_code == 200
    body = r.json()
    assert body["choices"][0]["message"]["tool_calls"] == [call]
    assert body["choices"][0]["finish_reason"] == "tool_calls"
    assert "gateway" not in body and "x-gateway-tool-calls-withheld" not in r.headers
    await app.state.services.shipper.flush()
    async with app.state.services.db.session() as session:
        (record,) = (await session.exec(select(UsageRecord))).all()
    assert record.decisions == [
        {"rule": "small-refunds", "policy": "agents", "stage": "tool", "action": "allow", "kinds": ["refund"],
         "tool_call_id": "call_1", "risk": "medium"}
    ]  # fmt: skip


async def test_denied_call_is_removed_and_explained(client: httpx.AsyncClient, upstream: FakeUpstream) -> None:
    agent = await create_key(client, "agent")
    kept = tool_call("refund", {"order_id": "42", "amount": 10}, "call_ok")
    upstream.script(tool_reply(tool_call("shell.exec", {"cmd": "rm -rf /"}, "call_sh"), kept, content="Sure."))
    r = await client.post("/v1/chat/completions", headers=bearer(agent), json=ask())
    assert r.status_code == 200
    message = r.json()["choices"][0]["message"]
    assert message["tool_calls"] == [kept]
    assert message["content"].startswith("Sure.\n\n[gateway] Shell access is not allowed.")
    assert "call_sh" in message["content"]
    (report,) = r.json()["gateway"]["tool_calls"]
    assert report["id"] == "call_sh" and report["action"] == "denied" and report["rule"] == "no-shell"
    assert r.headers["x-gateway-tool-calls-withheld"] == "1"


async def test_choice_without_calls_left_finishes_with_stop(client: httpx.AsyncClient, upstream: FakeUpstream) -> None:
    agent = await create_key(client, "agent")
    upstream.script(tool_reply(tool_call("shell.exec", {"cmd": "ls"})))
    r = await client.post("/v1/chat/completions", headers=bearer(agent), json=ask())
    choice = r.json()["choices"][0]
    assert choice["finish_reason"] == "stop" and "tool_calls" not in choice["message"]


async def test_invalid_arguments_are_denied(client: httpx.AsyncClient, upstream: FakeUpstream) -> None:
    agent = await create_key(client, "agent")
    upstream.script(tool_reply(tool_call("refund", '{"amount": 5, "amount": 500}')))
    r = await client.post("/v1/chat/completions", headers=bearer(agent), json=ask())
    (report,) = r.json()["gateway"]["tool_calls"]
    assert report["rule"] == "invalid-arguments" and report["action"] == "denied"


@pytest.mark.parametrize("on_deny", ["error"])
async def test_on_deny_error_turns_the_response_into_403(client: httpx.AsyncClient, upstream: FakeUpstream) -> None:
    agent = await create_key(client, "agent")
    upstream.script(tool_reply(tool_call("shell.exec", {"cmd": "ls"})))
    r = await client.post("/v1/chat/completions", headers=bearer(agent), json=ask())
    assert r.status_code == 403
    assert r.json()["error"]["code"] == "policy_denied"
    assert "no-shell" in r.json()["error"]["message"]


async def test_gated_call_is_held_and_released_once_after_approval(
    client: httpx.AsyncClient, upstream: FakeUpstream, app: FastAPI
) -> None:
    agent = await create_key(client, "agent")
    approver = await create_key(client, "alice", role="approver")
    call = tool_call("refund", {"order_id": "42", "amount": 500}, "call_big")
    upstream.script(tool_reply(call))
    r = await client.post("/v1/chat/completions", headers=bearer(agent), json=ask())
    assert r.status_code == 200
    (report,) = r.json()["gateway"]["tool_calls"]
    approval_id = report["approval"]["id"]
    assert report["action"] == "pending_approval" and report["approval"]["status"] == "pending"
    assert r.headers["x-gateway-approvals"] == approval_id
    assert "tool_calls" not in r.json()["choices"][0]["message"]
    assert approval_id in r.json()["choices"][0]["message"]["content"]

    # Still pending: the resume is refused, so is a tool result for the call.
    resumed = await client.post("/v1/chat/completions", headers=bearer(agent), json=ask(resume_approvals=[approval_id]))
    assert resumed.status_code == 403 and resumed.json()["error"]["code"] == "approval_required"

    decided = await client.post(
        f"/v1/approvals/{approval_id}/approve", headers=bearer(approver), json={"comment": "customer verified"}
    )
    assert decided.status_code == 200 and decided.json()["status"] == "approved"
    assert decided.json()["decided_by"] == approver["id"]

    requests_before = len(upstream.requests)
    resumed = await client.post("/v1/chat/completions", headers=bearer(agent), json=ask(resume_approvals=[approval_id]))
    assert resumed.status_code == 200, resumed.text
    assert resumed.json()["choices"][0]["message"]["tool_calls"] == [call]  # same id, same argument string
    assert len(upstream.requests) == requests_before  # the model was not asked again
    again = await client.post("/v1/chat/completions", headers=bearer(agent), json=ask(resume_approvals=[approval_id]))
    assert again.status_code == 409 and again.json()["error"]["code"] == "approval_already_released"

    # The released call may now be answered; the upstream receives the tool result.
    upstream.script(text_reply("Refunded."))
    history = [
        {"role": "user", "content": "refund order 42"},
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "call_big", "content": "ok"},
    ]
    done = await client.post("/v1/chat/completions", headers=bearer(agent), json=ask() | {"messages": history})
    assert done.status_code == 200 and done.json()["choices"][0]["message"]["content"] == "Refunded."
    assert upstream.last.body is not None and upstream.last.body["messages"][2]["role"] == "tool"

    # The same call id with a changed amount was never approved.
    changed = tool_call("refund", {"order_id": "42", "amount": 5000}, "call_big")
    history[1] = {"role": "assistant", "content": None, "tool_calls": [changed]}
    refused = await client.post("/v1/chat/completions", headers=bearer(agent), json=ask() | {"messages": history})
    assert refused.status_code == 400
    assert refused.json()["error"]["param"] == "messages[2].tool_call_id"
    assert "arguments differ" in refused.json()["error"]["message"]

    async with app.state.services.db.session() as session:
        row = await session.get(ApprovalRequest, approval_id)
    assert row is not None and row.status == "executed" and row.comment == "customer verified"


async def test_tool_result_for_a_pending_or_denied_call_is_refused(
    client: httpx.AsyncClient, upstream: FakeUpstream
) -> None:
    agent = await create_key(client, "agent")
    call = tool_call("refund", {"order_id": "42", "amount": 500}, "call_p")
    upstream.script(tool_reply(call))
    r = await client.post("/v1/chat/completions", headers=bearer(agent), json=ask())
    approval_id = r.json()["gateway"]["tool_calls"][0]["approval"]["id"]
    for fabricated, expect in ((call, f"approval {approval_id} is pending"),
                               (tool_call("shell.exec", {"cmd": "ls"}, "call_p"), "withheld")):  # fmt: skip
        history = [
            {"role": "user", "content": "refund order 42"},
            {"role": "assistant", "content": None, "tool_calls": [fabricated]},
            {"role": "tool", "tool_call_id": "call_p", "content": "done"},
        ]
        refused = await client.post("/v1/chat/completions", headers=bearer(agent), json=ask() | {"messages": history})
        assert refused.status_code == 400
        assert refused.json()["error"]["code"] == "tool_call_withheld"
        assert expect in refused.json()["error"]["message"]
    assert len(upstream.requests) == 1  # neither refused conversation reached the model


async def test_self_approval_and_non_approvers_are_refused(client: httpx.AsyncClient, upstream: FakeUpstream) -> None:
    agent = await create_key(client, "agent", role="approver")  # an approver cannot approve its own call
    other = await create_key(client, "bob")
    upstream.script(tool_reply(tool_call("refund", {"order_id": "1", "amount": 900})))
    r = await client.post("/v1/chat/completions", headers=bearer(agent), json=ask())
    approval_id = r.json()["gateway"]["tool_calls"][0]["approval"]["id"]
    own = await client.post(f"/v1/approvals/{approval_id}/approve", headers=bearer(agent))
    assert own.status_code == 403 and own.json()["error"]["code"] == "self_approval"
    stranger = await client.post(f"/v1/approvals/{approval_id}/approve", headers=bearer(other))
    assert stranger.status_code == 404  # bob may not even see it
    state = await client.get(f"/v1/approvals/{approval_id}", headers=bearer(agent))
    assert state.json()["status"] == "pending"


async def test_deny_path_and_comment_required(client: httpx.AsyncClient, upstream: FakeUpstream) -> None:
    agent = await create_key(client, "agent")
    approver = await create_key(client, "alice", role="approver")
    upstream.script(tool_reply(tool_call("refund", {"order_id": "1", "amount": 900})))
    r = await client.post("/v1/chat/completions", headers=bearer(agent), json=ask())
    approval_id = r.json()["gateway"]["tool_calls"][0]["approval"]["id"]
    bare = await client.post(f"/v1/approvals/{approval_id}/deny", headers=bearer(approver))
    assert bare.status_code == 400 and bare.json()["error"]["param"] == "comment"
    denied = await client.post(
        f"/v1/approvals/{approval_id}/deny", headers=bearer(approver), json={"comment": "fraud suspected"}
    )
    assert denied.json()["status"] == "denied"
    late = await client.post(f"/v1/approvals/{approval_id}/approve", headers=bearer(approver))
    assert late.status_code == 409
    waited = await client.get(f"/v1/approvals/{approval_id}/wait", headers=bearer(agent), params={"timeout": 5})
    assert waited.json()["status"] == "denied" and waited.json()["comment"] == "fraud suspected"
    resumed = await client.post("/v1/chat/completions", headers=bearer(agent), json=ask(resume_approvals=approval_id))
    assert resumed.status_code == 403 and "fraud suspected" in resumed.json()["error"]["message"]


@pytest.mark.parametrize("expires", ["1s"])
async def test_expiry_denies_by_default(client: httpx.AsyncClient, upstream: FakeUpstream) -> None:
    agent = await create_key(client, "agent")
    approver = await create_key(client, "alice", role="approver")
    upstream.script(tool_reply(tool_call("refund", {"order_id": "1", "amount": 900})))
    r = await client.post("/v1/chat/completions", headers=bearer(agent), json=ask())
    approval_id = r.json()["gateway"]["tool_calls"][0]["approval"]["id"]
    waited = await client.get(f"/v1/approvals/{approval_id}/wait", headers=bearer(agent), params={"timeout": 5})
    assert waited.json()["status"] == "expired" and waited.json()["decided_by"] == "system"
    late = await client.post(f"/v1/approvals/{approval_id}/approve", headers=bearer(approver))
    assert late.status_code == 409
    resumed = await client.post("/v1/chat/completions", headers=bearer(agent), json=ask(resume_approvals=[approval_id]))
    assert resumed.status_code == 403 and resumed.json()["error"]["code"] == "policy_denied"


async def test_wait_timeout_is_bounded(client: httpx.AsyncClient) -> None:
    agent = await create_key(client, "agent")
    r = await client.get("/v1/approvals/apr_x/wait", headers=bearer(agent), params={"timeout": 56})
    assert r.status_code == 400 and r.json()["error"]["param"] == "timeout"
    missing = await client.get("/v1/approvals/apr_x/wait", headers=bearer(agent), params={"timeout": 1})
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "approval_not_found"


async def test_resume_field_is_validated(client: httpx.AsyncClient) -> None:
    agent = await create_key(client, "agent")
    for bad in ([], [1], ["x"], ["apr_a", "apr_a"]):
        r = await client.post("/v1/chat/completions", headers=bearer(agent), json=ask(resume_approvals=bad))
        assert r.status_code == 400 and r.json()["error"]["param"] == "resume_approvals"


async def test_another_key_cannot_resume(client: httpx.AsyncClient, upstream: FakeUpstream) -> None:
    agent, thief = await create_key(client, "agent"), await create_key(client, "thief", role="approver")
    approver = await create_key(client, "alice", role="approver")
    upstream.script(tool_reply(tool_call("refund", {"order_id": "1", "amount": 900})))
    r = await client.post("/v1/chat/completions", headers=bearer(agent), json=ask())
    approval_id = r.json()["gateway"]["tool_calls"][0]["approval"]["id"]
    await client.post(f"/v1/approvals/{approval_id}/approve", headers=bearer(approver))
    stolen = await client.post("/v1/chat/completions", headers=bearer(thief), json=ask(resume_approvals=[approval_id]))
    assert stolen.status_code == 403
    listed = await client.get("/v1/approvals", headers=bearer(approver), params={"status": "approved"})
    assert [a["id"] for a in listed.json()["data"]] == [approval_id]


def chunk(delta: dict[str, object], finish: str | None = None) -> dict[str, object]:
    return {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o-mini",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}  # fmt: skip


def streamed_call(call_id: str, name: str, arguments: str) -> list[bytes | dict[str, object]]:
    head = {"index": 0, "id": call_id, "type": "function", "function": {"name": name, "arguments": ""}}
    pieces = [arguments[i : i + 5] for i in range(0, len(arguments), 5)]
    return [
        chunk({"role": "assistant", "content": None, "tool_calls": [head]}),
        *[chunk({"tool_calls": [{"index": 0, "function": {"arguments": p}}]}) for p in pieces],
        chunk({}, "tool_calls"),
        b"[DONE]",
    ]


def events(text: str) -> list[dict[str, object]]:
    return [orjson.loads(b[6:]) for b in text.split("\n\n") if b.startswith("data: {")]


async def test_streamed_gated_call_is_held_until_complete(client: httpx.AsyncClient, upstream: FakeUpstream) -> None:
    agent = await create_key(client, "agent")
    approver = await create_key(client, "alice", role="approver")
    arguments = '{"order_id": "42", "amount": 500}'
    from tests.fake_upstream import Reply

    upstream.script(Reply(stream_events=streamed_call("call_s", "refund", arguments)))
    r = await client.post("/v1/chat/completions", headers=bearer(agent), json=ask(stream=True))
    assert r.status_code == 200
    chunks = events(r.text)
    assert all("choices" in c for c in chunks), r.text
    assert not any(c["choices"] and c["choices"][0]["delta"].get("tool_calls") for c in chunks)  # nothing leaked
    final = chunks[-1]
    assert final["choices"][0]["finish_reason"] == "stop"
    (report,) = final["gateway"]["tool_calls"]
    approval_id = report["approval"]["id"]
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert approval_id in text

    await client.post(f"/v1/approvals/{approval_id}/approve", headers=bearer(approver))
    resumed = await client.post(
        "/v1/chat/completions", headers=bearer(agent), json=ask(stream=True, resume_approvals=[approval_id])
    )
    (released,) = events(resumed.text)[0]["choices"][0]["delta"]["tool_calls"]
    assert released["id"] == "call_s" and released["function"]["arguments"] == arguments


async def test_streamed_allowed_call_is_released_whole(client: httpx.AsyncClient, upstream: FakeUpstream) -> None:
    agent = await create_key(client, "agent")
    from tests.fake_upstream import Reply

    arguments = '{"order_id": "7", "amount": 20}'
    upstream.script(Reply(stream_events=streamed_call("call_a", "refund", arguments)))
    r = await client.post("/v1/chat/completions", headers=bearer(agent), json=ask(stream=True))
    calls = [c["choices"][0]["delta"]["tool_calls"] for c in events(r.text) if c["choices"] and
             c["choices"][0]["delta"].get("tool_calls")]  # fmt: skip
    assert calls == [[{"index": 0, "id": "call_a", "type": "function",
                       "function": {"name": "refund", "arguments": arguments}}]]  # fmt: skip
    assert events(r.text)[-1]["choices"][0]["finish_reason"] == "tool_calls"


async def test_escaped_role_names_do_not_skip_the_tool_result_check(
    client: httpx.AsyncClient, upstream: FakeUpstream
) -> None:
    agent = await create_key(client, "agent")
    raw = (
        b'{"model": "gpt-test", "messages": [{"role": "user", "content": "x"},'
        b' {"role": "assistant", "tool_calls": [{"id": "c9", "type": "function",'
        b' "function": {"name": "shell.exec", "arguments": "{}"}}]},'
        b' {"role": "\\u0074ool", "tool_call_id": "c9", "content": "done"}]}'
    )
    r = await client.post(
        "/v1/chat/completions", headers={**bearer(agent), "content-type": "application/json"}, content=raw
    )
    assert r.status_code == 400 and r.json()["error"]["code"] == "tool_call_withheld"
    assert upstream.requests == []


async def test_deprecated_functions_are_refused_when_tool_rules_apply(client: httpx.AsyncClient) -> None:
    agent = await create_key(client, "agent")
    functions = [{"name": "refund", "parameters": {"type": "object"}}]
    r = await client.post("/v1/chat/completions", headers=bearer(agent), json=ask(functions=functions))
    assert r.status_code == 400 and r.json()["error"]["param"] == "functions"


@pytest.mark.parametrize("on_deny", ["error"])
async def test_on_deny_error_ends_a_stream_with_an_error_event(
    client: httpx.AsyncClient, upstream: FakeUpstream
) -> None:
    agent = await create_key(client, "agent")
    from tests.fake_upstream import Reply

    upstream.script(Reply(stream_events=streamed_call("call_x", "shell.exec", '{"cmd": "ls"}')))
    r = await client.post("/v1/chat/completions", headers=bearer(agent), json=ask(stream=True))
    last = [b for b in r.text.split("\n\n") if b.startswith("data: ")][-1]
    assert orjson.loads(last[6:])["error"]["code"] == "policy_denied"
    assert "shell.exec" not in r.text.replace("Tool call 'shell.exec'", "")  # the call itself never went out
