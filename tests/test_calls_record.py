"""/admin/calls/{request_id}: a call's decision record, readable right after the answer; usage records tagged with
the eval run named by x-gateway-eval-run."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import anyio
import httpx
import pytest
from fastapi import FastAPI

from gateway.config import GatewayConfig
from gateway.storage.tables import UsageRecord
from tests.conftest import AUTH, MakeConfig, chat

POLICY = """
name: test
guardrails:
  - {id: pii-in, stage: input, check: pii, action: redact}
"""


@pytest.fixture
def config(make_config: MakeConfig, tmp_path: Path) -> GatewayConfig:
    folder = tmp_path / "policies"
    folder.mkdir()
    (folder / "test.yaml").write_text(POLICY)
    return make_config(policies=str(folder))


async def key(client: httpx.AsyncClient, role: str) -> dict[str, str]:
    r = await client.post("/admin/keys", headers=AUTH, json={"name": role, "role": role})
    return {"authorization": f"Bearer {r.json()['key']}"}


async def test_a_call_just_answered_has_its_decision_record(client: httpx.AsyncClient) -> None:
    member, other, viewer = await key(client, "member"), await key(client, "member"), await key(client, "viewer")
    r = await client.post("/v1/chat/completions", headers=member, json=chat("demo", "mail jane.doe@example.org"))
    assert r.status_code == 200
    request_id = r.headers["x-request-id"]
    found = await client.get(f"/admin/calls/{request_id}", headers=viewer, params={"wait_ms": 0})  # still spooled
    assert found.status_code == 200, found.text
    call = found.json()
    assert call["object"] == "gateway.call" and call["request_id"] == request_id
    assert (call["model"], call["status_code"], call["stream"], call["error_code"]) == ("demo", 200, False, None)
    assert call["decisions"] == [
        {"rule": "pii-in", "policy": "test", "stage": "input", "action": "redact", "kinds": ["email"]}
    ]
    assert call["prompt_tokens"] > 0 and call["latency_ms"] > 0 and call["key_id"] and call["eval_run_id"] is None
    assert {"cost_usd", "prompt_id", "prompt_version", "policy_sha256", "created_at"} <= set(call)
    own = await client.get(f"/admin/calls/{request_id}", headers=member)
    assert own.status_code == 200  # the key that made the call reads its record
    theirs = await client.get(f"/admin/calls/{request_id}", headers=other, params={"wait_ms": 0})
    assert theirs.status_code == 404 and theirs.json()["error"]["code"] == "call_not_found"


async def test_a_call_recorded_by_another_process_is_waited_for(client: httpx.AsyncClient, app: FastAPI) -> None:
    async def ship_later() -> None:  # as another worker's shipper would, a moment later
        await anyio.sleep(0.1)
        async with app.state.services.db.session() as session:
            session.add(UsageRecord(request_id="req_elsewhere", model="demo", latency_ms=1.0, overhead_ms=0.1,
                                    status_code=200, stream=False, created_at=datetime.now(UTC)))  # fmt: skip
            await session.commit()

    async with anyio.create_task_group() as tasks:
        tasks.start_soon(ship_later)
        r = await client.get("/admin/calls/req_elsewhere", headers=AUTH, params={"wait_ms": 2000})
    assert r.status_code == 200 and r.json()["model"] == "demo"
    r = await client.get("/admin/calls/req_unknown", headers=AUTH, params={"wait_ms": 0})
    assert r.status_code == 404
    r = await client.get("/admin/calls/req_unknown", headers=AUTH, params={"wait_ms": 60_000})
    assert r.status_code == 400 and r.json()["error"]["param"] == "wait_ms"


async def test_calls_of_an_eval_run_are_tagged_and_reported_apart(client: httpx.AsyncClient) -> None:
    tagged = {**AUTH, "x-gateway-eval-run": "evr_0123456789abcdef0123456789"}
    r = await client.post("/v1/chat/completions", headers=tagged, json=chat("demo", "hello"))
    assert r.status_code == 200
    await client.post("/v1/chat/completions", headers=AUTH, json=chat("demo", "not in the run"))
    call = (await client.get(f"/admin/calls/{r.headers['x-request-id']}", headers=AUTH)).json()
    assert call["eval_run_id"] == "evr_0123456789abcdef0123456789"
    report = await client.get(
        "/admin/usage", headers=AUTH, params={"eval_run_id": call["eval_run_id"], "group_by": "model"}
    )
    assert [(row["group"], row["requests"]) for row in report.json()["data"]] == [("demo", 1)]
    everything = await client.get("/admin/usage", headers=AUTH, params={"group_by": "model"})
    assert [(row["group"], row["requests"]) for row in everything.json()["data"]] == [("demo", 2)]


async def test_a_malformed_eval_run_header_is_a_400(client: httpx.AsyncClient) -> None:
    for value in ["", "evr 1", "x" * 65, "evr_1;drop"]:
        r = await client.post("/v1/chat/completions", headers={**AUTH, "x-gateway-eval-run": value}, json=chat("demo"))
        assert r.status_code == 400, value
        error = r.json()["error"]
        assert (error["param"], error["type"]) == ("x-gateway-eval-run", "invalid_request_error")
