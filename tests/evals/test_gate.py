"""The promotion gate: a suite's sha256, gate config checks, and gated label moves through the app (409 eval_required
until a passing run of that suite against that version is stored; admins force with an audited reason)."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from sqlmodel import col, select

from gateway.config import ConfigError, GatewayConfig
from gateway.evals.spec import suite_sha256  # the identity the runner stores, which the gate checks
from gateway.storage.tables import AuditRecord
from tests.conftest import AUTH, MakeConfig
from tests.evals.run_results import make_result, run_id

SUITE = """\
name: triage
targets: [prompt:support-triage@staging]
cases:
  - {id: inline, vars: {q: hi}}
  - dataset: cases.jsonl
"""
PROMPT = {"id": "support-triage", "model": "demo", "messages": [{"role": "system", "content": "Triage: {{ q }}"}]}


@pytest.fixture
def suite(tmp_path: Path) -> Path:
    (tmp_path / "evals").mkdir()
    (tmp_path / "evals" / "cases.jsonl").write_text('{"id": "row-1", "vars": {"q": "refund"}}\n')
    path = tmp_path / "evals" / "triage.yaml"
    path.write_text(SUITE)
    return path


@pytest.fixture
def config(make_config: MakeConfig, suite: Path) -> GatewayConfig:
    gates = {"production": {"suite": str(suite)}, "staging": {"suite": str(suite), "min_pass_rate": 0.5}}
    return make_config(prompts={"gates": gates})


@pytest.mark.parametrize(
    ("gate", "says"),
    [
        ({"suite": "evals/nowhere.yaml"}, "prompts.gates.production.suite: no suite file 'evals/nowhere.yaml'"),
        ({"suite": "SUITE", "min_pass_rate": 1.5}, "prompts.gates.production.min_pass_rate: Input should be less"),
        ({"suite": "SUITE", "min": 1}, "prompts.gates.production.min: Extra inputs are not permitted"),
    ],
)
def test_a_bad_gate_stops_config_load_naming_the_label(
    make_config: MakeConfig, suite: Path, gate: dict[str, object], says: str
) -> None:
    gate = {key: str(suite) if value == "SUITE" else value for key, value in gate.items()}
    with pytest.raises(ConfigError, match=says.replace("(", r"\(")):
        make_config(prompts={"gates": {"production": gate}})


async def move(client: httpx.AsyncClient, label: str, version: int, headers: dict[str, str] = AUTH, **extra: object):
    return await client.put(
        f"/admin/prompts/support-triage/labels/{label}", headers=headers, json={"version": version, **extra}
    )


async def store(client: httpx.AsyncClient, version: int, sha: str, **extra: object) -> str:
    result = make_result(rid=run_id(), sha=sha, prompt=("support-triage", version), model=None, **extra)
    assert (await client.post("/admin/evals/runs", headers=AUTH, json=result)).status_code == 201
    return str(result["run_id"])


async def moves(app: FastAPI) -> list[AuditRecord]:
    await app.state.services.audit.flush()
    async with app.state.services.db.session() as session:
        query = select(AuditRecord).where(AuditRecord.action == "prompt.label_moved").order_by(col(AuditRecord.seq))
        return list((await session.exec(query)).all())


async def test_a_gated_move_needs_a_passing_run_of_that_suite_against_that_version(
    client: httpx.AsyncClient, app: FastAPI, suite: Path
) -> None:
    for _ in range(2):
        assert (await client.post("/admin/prompts", headers=AUTH, json=PROMPT)).status_code == 201
    r = await move(client, "production", 2)
    assert r.status_code == 409
    error = r.json()["error"]
    assert (error["code"], error["type"], error["param"]) == ("eval_required", "invalid_request_error", "label")
    assert str(suite) in error["message"] and "version 2" in error["message"] and "at least 1" in error["message"]
    sha = suite_sha256(suite)
    await store(client, 1, sha)  # another version
    await store(client, 2, "0" * 64)  # another suite (or an older edit of this one)
    await store(client, 2, sha, statuses={"prompt:support-triage@staging": ["passed", "failed"]})  # below 1.0
    assert (await move(client, "production", 2)).status_code == 409
    passing = await store(client, 2, sha)
    r = await move(client, "production", 2)
    assert r.status_code == 200 and r.json()["version"] == 2
    (record,) = await moves(app)
    assert record.details["eval_run_id"] == passing and record.outcome == "moved"
    assert (await move(client, "canary", 1)).status_code == 200  # an ungated label moves freely


async def test_forcing_a_gated_move_needs_an_admin_and_a_reason(client: httpx.AsyncClient, app: FastAPI) -> None:
    await client.post("/admin/prompts", headers=AUTH, json=PROMPT)
    key = await client.post("/admin/keys", headers=AUTH, json={"name": "author", "role": "member"})
    member = {"authorization": f"Bearer {key.json()['key']}"}
    assert (await move(client, "staging", 1, member)).json()["error"]["code"] == "eval_required"
    r = await move(client, "staging", 1, member, force=True, reason="hotfix")
    assert r.status_code == 403 and r.json()["error"]["code"] == "force_needs_admin"
    r = await move(client, "production", 1, force=True, reason="  ")
    assert r.status_code == 400 and r.json()["error"]["param"] == "reason"
    r = await move(client, "production", 1, reason="hotfix")  # a reason without force: a mistake, said so
    assert r.status_code == 400 and r.json()["error"]["param"] == "reason"
    r = await move(client, "production", 1, force=True, reason="incident 42: the suite's judge is down")
    assert r.status_code == 200
    (record,) = await moves(app)
    assert record.outcome == "forced" and record.reason == "incident 42: the suite's judge is down"
    assert record.details["forced_reason"] == record.reason and "eval_run_id" not in record.details


def test_the_cli_refuses_force_without_a_reason_before_asking_the_gateway() -> None:
    from gateway.cli import main

    argv = ["prompts", "label", "support-triage", "production", "2", "--force", "--url", "http://127.0.0.1:9"]
    with pytest.raises(SystemExit, match="--force needs --reason"):
        main([*argv, "--key", "sk-any"])
