"""An agent loop written with the official openai SDK against `gateway serve`: refunds allowed, held, approved,
denied, expired; the approval survives a restart; an edited audit record is caught by `gateway audit verify`."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import openai
import pytest

from tests.approvals.conftest import TOOLS, text_reply, tool_call, tool_reply
from tests.conftest import AUTH, MASTER_KEY
from tests.fake_upstream import FakeUpstream, Reply
from tests.servers import ServedGateway, write_config

POLICY = """
name: agents
tools:
  default: allow
  rules:
    - {id: small-refunds, match: refund, when: [{arg: amount, lte: 100}], action: allow}
    - {id: big-refunds, match: refund, when: [{arg: amount, gt: 100}, {arg: amount, lte: 1000}],
       action: require_approval, risk: high, approvers: {roles: [approver]}, expires_after: 15m}
    - {id: huge-refunds, match: refund, when: [{arg: amount, gt: 1000}], action: require_approval,
       risk: critical, expires_after: 1s}
"""


@dataclass
class Served:
    server: ServedGateway
    folder: Path
    agent: str = ""
    approver: str = ""
    agent_id: str = ""
    approver_id: str = ""

    def sdk(self, key: str) -> openai.OpenAI:
        return openai.OpenAI(base_url=f"{self.server.url}/v1", api_key=key, max_retries=0)

    def key(self, name: str, role: str) -> tuple[str, str]:
        r = httpx.post(f"{self.server.url}/admin/keys", headers=AUTH, json={"name": name, "role": role})
        assert r.status_code == 201, r.text
        return r.json()["key"], r.json()["id"]


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, upstream_server: FakeUpstream) -> Iterator[Served]:
    folder = tmp_path_factory.mktemp("agents")
    (folder / "policies").mkdir()
    (folder / "policies" / "agents.yaml").write_text(POLICY)
    config = write_config(
        folder,
        upstream_server.base_url,
        f"policies: {folder / 'policies'}\napprovals: {{sweep_interval_s: 0.2}}\n",
    )
    served = Served(ServedGateway(config).start(), folder)
    served.agent, served.agent_id = served.key("refund-agent", "member")
    served.approver, served.approver_id = served.key("alice", "approver")
    try:
        yield served
    finally:
        served.server.stop()


@dataclass
class AgentRun:
    executed: list[dict[str, object]] = field(default_factory=list)  # refunds the agent actually performed
    held: list[dict[str, object]] = field(default_factory=list)  # approvals as the wait endpoint returned them
    final: str | None = None
    messages: list[dict[str, object]] = field(default_factory=list)


def run_agent(sdk: openai.OpenAI, amount: float, *, stream: bool = False) -> AgentRun:
    """A plain Chat Completions agent following the gateway's documented approval protocol."""
    run = AgentRun(messages=[{"role": "user", "content": f"Refund order 42 by {amount}"}])
    for _ in range(6):
        message, finish, pending = turn(sdk, run.messages, stream=stream)
        run.messages.append(message)
        calls = list(message.get("tool_calls") or [])
        for approval_id in pending:
            approval = sdk.get(f"/approvals/{approval_id}/wait", cast_to=object, options={"params": {"timeout": 10}})
            run.held.append(approval)  # type: ignore[arg-type]
            if approval["status"] == "approved":  # type: ignore[index]
                resumed = sdk.chat.completions.create(
                    model="gpt-test", messages=run.messages, tools=TOOLS, extra_body={"resume_approvals": [approval_id]}
                )
                released = resumed.choices[0].message.model_dump(exclude_none=True)
                run.messages.append(released)
                calls += released["tool_calls"]
        for call in calls:
            arguments = json.loads(call["function"]["arguments"])
            run.executed.append(arguments)
            run.messages.append({"role": "tool", "tool_call_id": call["id"], "content": "refund issued"})
        if not calls:
            run.final = message.get("content")  # type: ignore[assignment]
            return run
    raise AssertionError("the agent did not finish")


def turn(
    sdk: openai.OpenAI, messages: list[dict[str, object]], *, stream: bool
) -> tuple[dict[str, object], str, list[str]]:
    """One model turn: the assistant message, its finish reason and the approvals it is held on."""
    if not stream:
        raw = sdk.chat.completions.with_raw_response.create(model="gpt-test", messages=messages, tools=TOOLS)
        completion = raw.parse()
        report = (completion.model_extra or {}).get("gateway", {}).get("tool_calls", [])
        pending = [t["approval"]["id"] for t in report if t["action"] == "pending_approval"]
        assert raw.headers.get("x-gateway-approvals", "") == ",".join(pending)
        choice = completion.choices[0]
        return choice.message.model_dump(exclude_none=True), choice.finish_reason, pending
    content, calls, pending, finish = "", {}, [], ""
    for chunk in sdk.chat.completions.create(model="gpt-test", messages=messages, tools=TOOLS, stream=True):
        report = (chunk.model_extra or {}).get("gateway", {}).get("tool_calls", [])
        pending += [t["approval"]["id"] for t in report if t["action"] == "pending_approval"]
        for choice in chunk.choices:
            content += choice.delta.content or ""
            for delta in choice.delta.tool_calls or []:
                call = calls.setdefault(delta.index, {"id": delta.id, "type": "function",
                                                      "function": {"name": "", "arguments": ""}})  # fmt: skip
                call["function"]["name"] += (delta.function.name or "") if delta.function else ""
                call["function"]["arguments"] += (delta.function.arguments or "") if delta.function else ""
            finish = choice.finish_reason or finish
    message: dict[str, object] = {"role": "assistant", "content": content or None}
    if calls:
        message["tool_calls"] = [calls[i] for i in sorted(calls)]
    return message, finish, pending


def approve_soon(served: Served, *, deny: bool = False, delay_s: float = 0.3) -> Callable[[], None]:
    """An approver who acts from another thread once a request is pending, while the agent waits."""

    def pending() -> list[dict[str, object]]:
        listed = httpx.get(
            f"{served.server.url}/v1/approvals", headers=bearer(served.approver), params={"status": "pending"}
        )
        return [a for a in listed.json()["data"] if a["requested_by"]["key_id"] == served.agent_id]

    before = {a["id"] for a in pending()}  # left pending by earlier tests: not this agent run's

    def act() -> None:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            new = [a for a in pending() if a["id"] not in before]
            if new:
                time.sleep(delay_s)
                verb = "deny" if deny else "approve"
                body = {"comment": "not for this customer" if deny else "verified by phone"}
                r = httpx.post(f"{served.server.url}/v1/approvals/{new[0]['id']}/{verb}",
                               headers=bearer(served.approver), json=body)  # fmt: skip
                assert r.status_code == 200, r.text
                return
            time.sleep(0.05)

    thread = threading.Thread(target=act)
    thread.start()
    return lambda: thread.join(timeout=15)


def bearer(key: str) -> dict[str, str]:
    return {"authorization": f"Bearer {key}"}


def test_refund_50_is_allowed_without_approval(served: Served, upstream_server: FakeUpstream) -> None:
    upstream_server.reset()
    upstream_server.script(tool_reply(tool_call("refund", {"order_id": "42", "amount": 50})), text_reply("Done."))
    run = run_agent(served.sdk(served.agent), 50)
    assert run.executed == [{"order_id": "42", "amount": 50}] and run.held == [] and run.final == "Done."


def test_refund_500_is_held_approved_and_resumed_exactly_once(served: Served, upstream_server: FakeUpstream) -> None:
    upstream_server.reset()
    call = tool_call("refund", {"order_id": "42", "amount": 500}, "call_500")
    upstream_server.script(tool_reply(call), text_reply("Refund of 500 issued."))
    joined = approve_soon(served)
    run = run_agent(served.sdk(served.agent), 500)
    joined()
    assert [a["status"] for a in run.held] == ["approved"]
    assert run.executed == [{"order_id": "42", "amount": 500}]  # the call arrived once
    assert run.final == "Refund of 500 issued."
    released = [m for m in run.messages if m.get("tool_calls")]
    assert released[0]["tool_calls"][0]["id"] == "call_500"  # same id, same arguments as the model asked
    assert released[0]["tool_calls"][0]["function"]["arguments"] == call["function"]["arguments"]
    assert len(upstream_server.requests) == 2  # asked once, answered once: the resume did not call the model
    approval = run.held[0]
    again = served.sdk(served.agent).chat.completions.with_raw_response
    with pytest.raises(openai.ConflictError):
        again.create(model="gpt-test", messages=run.messages, extra_body={"resume_approvals": [approval["id"]]})
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:  # the audit log ships its spool every 0.5 s
        audit = httpx.get(f"{served.server.url}/admin/audit", headers=AUTH, params={"action": "approval.*"}).json()
        mine = [r for r in audit["data"] if r["subject"] == approval["id"]]
        if len(mine) >= 3:
            break
        time.sleep(0.1)
    assert [r["action"] for r in reversed(mine)] == ["approval.created", "approval.approved", "approval.executed"]
    decided = next(r for r in mine if r["action"] == "approval.approved")
    assert decided["actor"] == served.approver_id and decided["reason"] == "verified by phone"
    assert decided["policy_sha256"] == approval["policy"]["sha256"]


def test_a_resumed_call_with_a_changed_amount_is_refused(served: Served, upstream_server: FakeUpstream) -> None:
    upstream_server.reset()
    upstream_server.script(tool_reply(tool_call("refund", {"order_id": "42", "amount": 400}, "call_400")))
    joined = approve_soon(served, delay_s=0)
    sdk = served.sdk(served.agent)
    message, _, (approval_id,) = turn(sdk, [{"role": "user", "content": "refund 400"}], stream=False)
    joined()
    history: list[dict[str, object]] = [{"role": "user", "content": "refund 400"}, message]
    released = sdk.chat.completions.create(
        model="gpt-test", messages=history, extra_body={"resume_approvals": [approval_id]}
    )
    call = released.choices[0].message.model_dump(exclude_none=True)
    call["tool_calls"][0]["function"]["arguments"] = json.dumps({"order_id": "42", "amount": 4000})
    history += [call, {"role": "tool", "tool_call_id": "call_400", "content": "refund issued"}]
    with pytest.raises(openai.BadRequestError) as refused:
        sdk.chat.completions.create(model="gpt-test", messages=history, tools=TOOLS)
    assert "a changed argument needs a new approval" in str(refused.value)
    assert len(upstream_server.requests) == 1


def test_deny_path_the_call_never_reaches_the_agent(served: Served, upstream_server: FakeUpstream) -> None:
    upstream_server.reset()
    upstream_server.script(tool_reply(tool_call("refund", {"order_id": "42", "amount": 700})))
    joined = approve_soon(served, deny=True)
    run = run_agent(served.sdk(served.agent), 700)
    joined()
    assert [a["status"] for a in run.held] == ["denied"] and run.held[0]["comment"] == "not for this customer"
    assert run.executed == []


def test_expiry_path_defaults_to_deny(served: Served, upstream_server: FakeUpstream) -> None:
    upstream_server.reset()
    upstream_server.script(tool_reply(tool_call("refund", {"order_id": "42", "amount": 5000})))
    run = run_agent(served.sdk(served.agent), 5000)
    assert [a["status"] for a in run.held] == ["expired"] and run.executed == []


def test_self_approval_is_refused(served: Served, upstream_server: FakeUpstream) -> None:
    upstream_server.reset()
    key, _ = served.key("approving-agent", "approver")
    upstream_server.script(tool_reply(tool_call("refund", {"order_id": "9", "amount": 300})))
    _, _, (approval_id,) = turn(served.sdk(key), [{"role": "user", "content": "refund 300"}], stream=False)
    r = httpx.post(f"{served.server.url}/v1/approvals/{approval_id}/approve", headers=bearer(key))
    assert r.status_code == 403 and r.json()["error"]["code"] == "self_approval"


def test_streamed_tool_call_is_gated_the_same_way(served: Served, upstream_server: FakeUpstream) -> None:
    upstream_server.reset()
    arguments = json.dumps({"order_id": "42", "amount": 500})
    head = {"index": 0, "id": "call_st", "type": "function", "function": {"name": "refund", "arguments": ""}}

    def chunk(delta: dict[str, object], finish: str | None = None) -> dict[str, object]:
        return {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o-mini",
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}  # fmt: skip

    events = [chunk({"role": "assistant", "tool_calls": [head]})]
    events += [chunk({"tool_calls": [{"index": 0, "function": {"arguments": arguments[i : i + 4]}}]})
               for i in range(0, len(arguments), 4)]  # fmt: skip
    done = [chunk({"role": "assistant", "content": "Done."}), chunk({}, "stop"), b"[DONE]"]
    upstream_server.script(
        Reply(stream_events=[*events, chunk({}, "tool_calls"), b"[DONE]"]), Reply(stream_events=done)
    )
    joined = approve_soon(served)
    run = run_agent(served.sdk(served.agent), 500, stream=True)
    joined()
    assert [a["status"] for a in run.held] == ["approved"]
    assert run.executed == [{"order_id": "42", "amount": 500}]
    assert not run.messages[1].get("tool_calls")  # the streamed turn itself released nothing
    assert run.final == "Done."


def test_pending_approval_survives_a_restart(served: Served, upstream_server: FakeUpstream) -> None:
    upstream_server.reset()
    upstream_server.script(tool_reply(tool_call("refund", {"order_id": "8", "amount": 800}, "call_800")))
    sdk = served.sdk(served.agent)
    message, _, (approval_id,) = turn(sdk, [{"role": "user", "content": "refund 800"}], stream=False)
    served.server.kill()  # SIGKILL: nothing flushed on the way out
    served.server.start()
    r = httpx.post(f"{served.server.url}/v1/approvals/{approval_id}/approve", headers=bearer(served.approver))
    assert r.status_code == 200 and r.json()["status"] == "approved"
    released = served.sdk(served.agent).chat.completions.create(
        model="gpt-test", messages=[{"role": "user", "content": "refund 800"}, message],
        extra_body={"resume_approvals": [approval_id]},
    )  # fmt: skip
    assert released.choices[0].message.tool_calls[0].id == "call_800"


def test_an_edited_audit_record_is_detected_by_audit_verify(served: Served, upstream_server: FakeUpstream) -> None:
    config = served.server.config
    verify = [sys.executable, "-m", "gateway", "audit", "verify", "--config", str(config)]
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:  # the audit shipper chains spooled events every 0.5 s
        with sqlite3.connect(served.folder / "gateway.db") as db:
            row = db.execute("SELECT seq FROM audit_records WHERE action = 'approval.approved' LIMIT 1").fetchone()
        if row:
            break
        time.sleep(0.2)
    assert row is not None
    assert subprocess.run(verify, capture_output=True, text=True).returncode == 0
    with sqlite3.connect(served.folder / "gateway.db") as db:
        db.execute("UPDATE audit_records SET reason = 'approved by the CEO' WHERE seq = ?", (row[0],))
    result = subprocess.run(verify, capture_output=True, text=True)
    assert result.returncode == 1
    assert f"seq {row[0]}" in result.stdout + result.stderr


def test_cli_lists_and_approves(
    served: Served, upstream_server: FakeUpstream, capsys: pytest.CaptureFixture[str]
) -> None:
    from gateway.cli import main

    upstream_server.reset()
    upstream_server.script(tool_reply(tool_call("refund", {"order_id": "5", "amount": 250}, "call_cli")))
    _, _, (approval_id,) = turn(served.sdk(served.agent), [{"role": "user", "content": "refund 250"}], stream=False)
    connection = ["--url", served.server.url, "--key", served.approver]
    assert main(["approvals", "list", *connection]) == 0
    listed = capsys.readouterr().out
    assert approval_id in listed and "refund" in listed and '"amount":250' in listed
    assert main(["approvals", "approve", approval_id, "--comment", "looks fine", *connection]) == 0
    assert "approved" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="409"):
        main(["approvals", "deny", approval_id, "--comment", "too late", *connection])
    assert main(["tools", "suspend", "--key-id", served.agent_id, "--reason", "drill", "--url", served.server.url,
                 "--key", MASTER_KEY]) == 0  # fmt: skip
    assert main(["tools", "resume", "--key-id", served.agent_id, "--url", served.server.url, "--key", MASTER_KEY]) == 0
