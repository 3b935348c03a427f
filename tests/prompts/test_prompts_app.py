"""The prompt registry through the app: versions, labels, calling a prompt, rollback, what is recorded."""

from __future__ import annotations

import httpx
import pytest
from fastapi import FastAPI
from sqlmodel import select

from gateway.storage.tables import AuditRecord, UsageRecord
from tests.conftest import AUTH, chat
from tests.fake_upstream import FakeUpstream
from tests.test_hot_path import in_test_request, queries  # noqa: F401 - the fixture

TRIAGE = {
    "id": "support-triage",
    "model": "gpt-test",
    "params": {"temperature": 0, "max_tokens": 50},
    "messages": [
        {"role": "system", "content": "Triage mail for {{ product }}."},
        {"role": "user", "content": "Tier: {{ tier }}"},
    ],
    "commit_message": "first",
}


async def create(client: httpx.AsyncClient, spec: dict[str, object], headers: dict[str, str] = AUTH) -> httpx.Response:
    return await client.post("/admin/prompts", headers=headers, json=spec)


async def member(client: httpx.AsyncClient) -> dict[str, str]:
    r = await client.post("/admin/keys", headers=AUTH, json={"name": "author", "role": "member"})
    return {"authorization": f"Bearer {r.json()['key']}"}


def call(label: str = "production", **variables: object) -> dict[str, object]:
    body = chat("gpt-test", "My invoice is wrong")
    values = variables or {"product": "Acme", "tier": "pro"}
    body["prompt"] = {"id": "support-triage", "label": label, "variables": values}
    return body


async def test_versions_are_numbered_and_latest_follows(client: httpx.AsyncClient) -> None:
    first = await create(client, TRIAGE)
    assert first.status_code == 201 and first.json()["version"] == 1
    assert first.json()["variables"] == ["product", "tier"]
    second = await create(client, {**TRIAGE, "params": {"temperature": 0.5}, "commit_message": "warmer"})
    assert second.json()["version"] == 2
    same = await client.post("/admin/prompts", headers=AUTH, params={"if_changed": "true"}, json=second.json()["spec"])
    assert same.json()["version"] == 2 and same.json()["created"] is False  # sync is idempotent
    listed = await client.get("/admin/prompts", headers=AUTH)
    assert listed.json()["data"] == [{"id": "support-triage", "latest": 2, "labels": {"latest": 2}}]
    shown = await client.get("/admin/prompts/support-triage", headers=AUTH)
    assert [v["commit_message"] for v in shown.json()["versions"]] == ["first", "warmer"]
    diff = await client.get("/admin/prompts/support-triage/diff", headers=AUTH, params={"from": 1, "to": 2})
    assert "+  temperature: 0.5" in diff.json()["diff"] and "-  max_tokens: 50" in diff.json()["diff"]


async def test_calling_a_prompt_by_label_renders_it_before_the_request_messages(
    client: httpx.AsyncClient, upstream: FakeUpstream, app: FastAPI
) -> None:
    await create(client, TRIAGE)
    moved = await client.put("/admin/prompts/support-triage/labels/production", headers=AUTH, json={"version": 1})
    assert moved.status_code == 200 and moved.json()["previous_version"] is None
    body = call()
    body["max_tokens"] = 7  # the request's own fields win over the prompt's defaults
    r = await client.post("/v1/chat/completions", headers=AUTH, json=body)
    assert r.status_code == 200, r.text
    sent = upstream.last.body
    assert sent is not None and "prompt" not in sent
    assert sent["messages"] == [
        {"role": "system", "content": "Triage mail for Acme."},
        {"role": "user", "content": "Tier: pro"},
        {"role": "user", "content": "My invoice is wrong"},
    ]
    assert sent["temperature"] == 0 and sent["max_tokens"] == 7
    await app.state.services.shipper.flush()
    async with app.state.services.db.session() as session:
        (record,) = (await session.exec(select(UsageRecord))).all()
    assert (record.prompt_id, record.prompt_version) == ("support-triage", 1)


async def test_shorthand_model_takes_the_prompts_model_and_pins_versions(
    client: httpx.AsyncClient, upstream: FakeUpstream
) -> None:
    await create(client, TRIAGE)
    await create(client, {**TRIAGE, "messages": [{"role": "system", "content": "v2 for {{ product }} {{ tier }}"}]})
    for model, expected in (("prompt:support-triage", "v2 for"), ("prompt:support-triage@1", "Triage mail")):
        body = {"model": model, "messages": [], "prompt": {"variables": {"product": "Acme", "tier": "pro"}}}
        r = await client.post("/v1/chat/completions", headers=AUTH, json=body)
        assert r.status_code == 200, r.text
        assert upstream.last.body is not None and upstream.last.body["model"] == "gpt-4o-mini"  # gpt-test upstream
        assert upstream.last.body["messages"][0]["content"].startswith(expected)


@pytest.mark.parametrize(
    ("prompt", "status", "param"),
    [
        ({"id": "nope"}, 404, "prompt.id"),
        ({"id": "support-triage", "label": "staging"}, 404, "prompt.label"),
        ({"id": "support-triage", "version": 9}, 404, "prompt.version"),
        ({"id": "support-triage", "variables": {"product": "x"}}, 400, "prompt.variables.tier"),
        ({"id": "support-triage", "variables": {"product": "x", "tier": "y", "ex": 1}}, 400, "prompt.variables.ex"),
        ({"id": "support-triage", "label": "a", "version": 1}, 400, "prompt.version"),
        ({"id": "support-triage", "colour": 1}, 400, "prompt.colour"),
        ("support-triage", 400, "prompt"),
    ],
)
async def test_bad_references_are_openai_shaped_errors(
    client: httpx.AsyncClient, upstream: FakeUpstream, prompt: object, status: int, param: str
) -> None:
    await create(client, TRIAGE)
    r = await client.post("/v1/chat/completions", headers=AUTH, json={**chat("gpt-test"), "prompt": prompt})
    assert r.status_code == status, r.text
    assert r.json()["error"]["param"] == param
    if status == 404:
        assert r.json()["error"]["code"] == "prompt_not_found"
    assert upstream.requests == []


async def test_rollback_takes_effect_on_the_next_request(client: httpx.AsyncClient, upstream: FakeUpstream) -> None:
    await create(client, TRIAGE)
    await create(client, {**TRIAGE, "messages": [{"role": "system", "content": "NEW {{ product }} {{ tier }}"}]})
    await client.put("/admin/prompts/support-triage/labels/production", headers=AUTH, json={"version": 2})
    await client.post("/v1/chat/completions", headers=AUTH, json=call())
    assert upstream.last.body is not None and upstream.last.body["messages"][0]["content"] == "NEW Acme pro"
    rolled = await client.put("/admin/prompts/support-triage/labels/production", headers=AUTH, json={"version": 1})
    assert rolled.json()["previous_version"] == 2
    await client.post("/v1/chat/completions", headers=AUTH, json=call())
    assert upstream.last.body is not None and upstream.last.body["messages"][0]["content"] == "Triage mail for Acme."


async def test_protected_labels_move_only_for_admins(client: httpx.AsyncClient, app: FastAPI) -> None:
    author = await member(client)
    assert (await create(client, TRIAGE, author)).status_code == 201
    staged = await client.put("/admin/prompts/support-triage/labels/staging", headers=author, json={"version": 1})
    assert staged.status_code == 200
    refused = await client.put("/admin/prompts/support-triage/labels/production", headers=author, json={"version": 1})
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "protected_label"
    latest = await client.put("/admin/prompts/support-triage/labels/latest", headers=AUTH, json={"version": 1})
    assert latest.status_code == 400 and latest.json()["error"]["param"] == "label"
    missing = await client.put("/admin/prompts/support-triage/labels/staging", headers=AUTH, json={"version": 5})
    assert missing.status_code == 404
    await app.state.services.audit.flush()
    async with app.state.services.db.session() as session:
        moves = (await session.exec(select(AuditRecord).where(AuditRecord.action == "prompt.label_moved"))).all()
    assert [(m.subject, m.actor_role, m.details["to_version"]) for m in moves] == [
        ("support-triage:staging", "member", 1)
    ]


async def test_templates_reaching_past_the_sandbox_are_refused(client: httpx.AsyncClient) -> None:
    bad = {**TRIAGE, "messages": [{"role": "system", "content": "{{ ''.__class__.__mro__ }}"}]}
    r = await create(client, bad)
    assert r.status_code == 400 and "SecurityError" in r.json()["error"]["message"]


async def test_resolving_a_label_makes_no_database_query(
    client: httpx.AsyncClient,
    upstream: FakeUpstream,
    queries: list[str],  # noqa: F811 - the fixture
) -> None:
    await create(client, TRIAGE)
    await client.put("/admin/prompts/support-triage/labels/production", headers=AUTH, json={"version": 1})
    token = in_test_request.set(True)
    try:
        for _ in range(3):
            assert (await client.post("/v1/chat/completions", headers=AUTH, json=call())).status_code == 200
        assert queries == []
    finally:
        in_test_request.reset(token)
