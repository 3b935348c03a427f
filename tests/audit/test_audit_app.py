"""Through the app: admin changes and policy decisions land in the audit chain, which verifies."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from gateway.audit.chain import verify
from gateway.config import GatewayConfig
from tests.conftest import AUTH, MakeConfig, chat


@pytest.fixture
def config(make_config: MakeConfig, tmp_path: Path) -> GatewayConfig:
    folder = tmp_path / "policies"
    folder.mkdir()
    (folder / "p.yaml").write_text("name: p\nguardrails:\n  - {id: pii-in, stage: input, check: pii, action: redact}\n")
    return make_config(policies=str(folder))


async def test_admin_changes_and_decisions_are_audited(client: httpx.AsyncClient, app: FastAPI) -> None:
    created = (await client.post("/admin/keys", headers=AUTH, json={"name": "bot"})).json()
    await client.post(f"/admin/keys/{created['id']}/revoke", headers=AUTH)
    r = await client.post("/v1/chat/completions", headers=AUTH, json=chat("demo", "mail jane.doe@example.org"))
    assert r.status_code == 200
    services = app.state.services
    await services.audit.flush()
    listing = (await client.get("/admin/audit", headers=AUTH)).json()
    actions = [record["action"] for record in listing["data"]]
    assert {"key.created", "key.revoked", "policy.decision"} <= set(actions)
    decision = next(record for record in listing["data"] if record["action"] == "policy.decision")
    assert decision["rule_id"] == "pii-in" and decision["outcome"] == "redact" and decision["actor"] == "master"
    assert len(decision["policy_sha256"]) == 64
    result = await verify(services.db)
    assert result.ok and result.checked >= 3
    assert (await client.get("/admin/audit/verify", headers=AUTH)).json()["ok"] is True
