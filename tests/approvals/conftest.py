"""Fixtures for tool-call governance: a policy with refund rules, keys for an agent and an approver, replies."""

from __future__ import annotations

from pathlib import Path

import httpx
import orjson
import pytest

from gateway.config import GatewayConfig
from tests.conftest import AUTH, MakeConfig
from tests.fake_upstream import Reply

POLICY = """
name: agents
tools:
  default: allow
  on_deny: {on_deny}
  rules:
    - {{id: small-refunds, match: refund, when: [{{arg: amount, lte: 100}}], action: allow}}
    - id: big-refunds
      match: refund
      when: [{{arg: amount, gt: 100}}]
      action: require_approval
      risk: high
      approvers: {{roles: [approver]}}
      expires_after: {expires}
      message: Refunds above 100 need a human.
    - {{id: no-shell, match: "shell.*", action: deny, message: Shell access is not allowed.}}
"""
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "refund",
            "parameters": {
                "type": "object",
                "properties": {"order_id": {"type": "string"}, "amount": {"type": "number"}},
                "required": ["order_id", "amount"],
            },
        },
    }
]


def write_policy(folder: Path, *, on_deny: str = "explain", expires: str = "15m") -> Path:
    folder.mkdir(exist_ok=True)
    (folder / "agents.yaml").write_text(POLICY.format(on_deny=on_deny, expires=expires))
    return folder


@pytest.fixture
def on_deny() -> str:
    return "explain"


@pytest.fixture
def expires() -> str:
    return "15m"


@pytest.fixture
def config(make_config: MakeConfig, tmp_path: Path, on_deny: str, expires: str) -> GatewayConfig:
    folder = write_policy(tmp_path / "policies", on_deny=on_deny, expires=expires)
    return make_config(policies=str(folder), approvals={"sweep_interval_s": 0.1})


def tool_call(name: str, arguments: dict[str, object] | str, call_id: str = "call_1") -> dict[str, object]:
    args = arguments if isinstance(arguments, str) else orjson.dumps(arguments).decode()
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": args}}


def tool_reply(*calls: dict[str, object], content: str | None = None) -> Reply:
    return Reply(
        json={
            "id": "chatcmpl-up",
            "object": "chat.completion",
            "created": 1,
            "model": "gpt-4o-mini",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": content, "tool_calls": list(calls)},
                    "finish_reason": "tool_calls",
                }
            ],
            "usage": {"prompt_tokens": 20, "completion_tokens": 10, "total_tokens": 30},
        }
    )


def text_reply(text: str) -> Reply:
    return Reply(
        json={
            "id": "chatcmpl-up2",
            "object": "chat.completion",
            "created": 1,
            "model": "gpt-4o-mini",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 30, "completion_tokens": 5, "total_tokens": 35},
        }
    )


async def create_key(client: httpx.AsyncClient, name: str, role: str = "member", **extra: object) -> dict[str, str]:
    r = await client.post("/admin/keys", headers=AUTH, json={"name": name, "role": role, **extra})
    assert r.status_code == 201, r.text
    return {"authorization": f"Bearer {r.json()['key']}", "id": r.json()["id"]}


def bearer(key: dict[str, str]) -> dict[str, str]:
    return {"authorization": key["authorization"]}
