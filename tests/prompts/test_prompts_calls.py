"""Calls rendered from a registry prompt go through every later stage as if the client had written them out:
guardrails see the rendered text, limits count it, keys' model lists apply, streams work, records name the prompt."""

from __future__ import annotations

from pathlib import Path

import httpx
import orjson
import pytest
from fastapi import FastAPI
from sqlmodel import select

from gateway.config import GatewayConfig
from gateway.storage.tables import AuditRecord, UsageRecord
from tests.conftest import AUTH, MakeConfig, chat
from tests.fake_upstream import FakeUpstream

POLICY = """
name: test
guardrails:
  - {id: pii-in, stage: input, check: pii, action: redact}
"""
NOTE = {
    "id": "note",
    "model": "gpt-test",
    "params": {"max_tokens": 40, "temperature": 0.1},
    "messages": [{"role": "system", "content": "Write to {{ customer }} about {{ topic }}. Be brief."}],
}
VARIABLES = {"customer": "Ann", "topic": "the refund"}


@pytest.fixture
def config(make_config: MakeConfig, tmp_path: Path) -> GatewayConfig:
    folder = tmp_path / "policies"
    folder.mkdir()
    (folder / "test.yaml").write_text(POLICY)
    return make_config(policies=str(folder), prompts={"protected_labels": ["production", "gold"]})


@pytest.fixture
async def note(client: httpx.AsyncClient) -> None:
    assert (await client.post("/admin/prompts", headers=AUTH, json=NOTE)).status_code == 201
    moved = await client.put("/admin/prompts/note/labels/production", headers=AUTH, json={"version": 1})
    assert moved.status_code == 200


async def key(client: httpx.AsyncClient, **fields: object) -> dict[str, str]:
    r = await client.post("/admin/keys", headers=AUTH, json={"name": "k", "role": "member", **fields})
    assert r.status_code == 201, r.text
    return {"authorization": f"Bearer {r.json()['key']}"}


def by_prompt(text: str = "Thanks", **variables: object) -> dict[str, object]:
    return {
        **chat("gpt-test", text),
        "prompt": {"id": "note", "label": "production", "variables": variables or VARIABLES},
    }


async def usage(app: FastAPI) -> list[UsageRecord]:
    await app.state.services.shipper.flush()
    async with app.state.services.db.session() as session:
        return list((await session.exec(select(UsageRecord).order_by(UsageRecord.id))).all())


@pytest.mark.usefixtures("note")
async def test_a_streamed_call_renders_the_prompt_and_records_its_version(
    client: httpx.AsyncClient, upstream: FakeUpstream, app: FastAPI
) -> None:
    async with client.stream("POST", "/v1/chat/completions", headers=AUTH, json={**by_prompt(), "stream": True}) as r:
        assert r.status_code == 200
        events = [line[6:] async for line in r.aiter_lines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]" and not any('"error"' in e for e in events)
    sent = upstream.last.body
    assert sent is not None and sent["stream"] is True and "prompt" not in sent
    assert [m["content"] for m in sent["messages"]] == ["Write to Ann about the refund. Be brief.", "Thanks"]
    (record,) = await usage(app)
    assert (record.prompt_id, record.prompt_version, record.stream) == ("note", 1, True)


@pytest.mark.usefixtures("note")
async def test_input_guardrails_see_the_rendered_text_and_the_audit_record_names_the_prompt(
    client: httpx.AsyncClient, upstream: FakeUpstream, app: FastAPI
) -> None:
    r = await client.post("/v1/chat/completions", headers=AUTH, json=by_prompt(customer="ann@example.org", topic="x"))
    assert r.status_code == 200, r.text
    assert upstream.last.body is not None
    assert upstream.last.body["messages"][0]["content"] == "Write to [REDACTED:email] about x. Be brief."
    await app.state.services.audit.flush()
    async with app.state.services.db.session() as session:
        (decision,) = (await session.exec(select(AuditRecord).where(AuditRecord.action == "policy.decision"))).all()
    assert decision.details is not None and decision.details["prompt"] == {"id": "note", "version": 1}


@pytest.mark.usefixtures("note")
async def test_variable_values_reach_the_upstream_literally(client: httpx.AsyncClient, upstream: FakeUpstream) -> None:
    value = "{{ customer }} {% if true %}<b>&</b>{% endif %} {{ ''.__class__ }}"
    r = await client.post("/v1/chat/completions", headers=AUTH, json=by_prompt(customer=value, topic="t"))
    assert r.status_code == 200, r.text
    assert upstream.last.body is not None
    assert upstream.last.body["messages"][0]["content"] == f"Write to {value} about t. Be brief."


@pytest.mark.usefixtures("note")
async def test_a_prompt_call_is_metered_like_the_same_call_written_out(
    client: httpx.AsyncClient, upstream: FakeUpstream
) -> None:
    """Limits count the final body: the rendered messages and the prompt's default max_tokens."""
    written_out = {
        "model": "gpt-test",
        "messages": [
            {"role": "system", "content": "Write to Ann about the refund. Be brief."},
            {"role": "user", "content": "Thanks"},
        ],
        "max_tokens": 40,
        "temperature": 0.1,
    }
    remaining = []
    for body in (by_prompt(), written_out):
        r = await client.post("/v1/chat/completions", headers=await key(client, tpm=10_000), json=body)
        assert r.status_code == 200, r.text
        remaining.append(int(r.headers["x-ratelimit-remaining-tokens"]))
        assert upstream.last.body is not None
    assert remaining[0] == remaining[1] < 10_000 - 40


@pytest.mark.usefixtures("note")
async def test_a_keys_model_list_applies_to_the_prompts_model(
    client: httpx.AsyncClient, upstream: FakeUpstream
) -> None:
    limited = await key(client, models=["demo"])
    body = {"model": "prompt:note@production", "messages": [], "prompt": {"variables": VARIABLES}}
    r = await client.post("/v1/chat/completions", headers=limited, json=body)
    assert r.status_code == 403 and r.json()["error"]["code"] == "model_not_allowed"
    assert upstream.requests == []


@pytest.mark.usefixtures("note")
async def test_configured_protected_labels_need_an_admin(client: httpx.AsyncClient) -> None:
    author = await key(client)
    refused = await client.put("/admin/prompts/note/labels/gold", headers=author, json={"version": 1})
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "protected_label"
    assert (
        await client.put("/admin/prompts/note/labels/silver", headers=author, json={"version": 1})
    ).status_code == 200
    assert (await client.put("/admin/prompts/note/labels/gold", headers=AUTH, json={"version": 1})).status_code == 200


async def test_prompt_null_and_legacy_completions_are_left_alone(
    client: httpx.AsyncClient, upstream: FakeUpstream
) -> None:
    r = await client.post("/v1/chat/completions", headers=AUTH, json={**chat("gpt-test"), "prompt": None})
    assert r.status_code == 200 and upstream.last.body is not None and "prompt" not in upstream.last.body
    r = await client.post("/v1/completions", headers=AUTH, json={"model": "gpt-test", "prompt": "Say hi"})
    assert r.status_code == 200, r.text  # `prompt` of /v1/completions is the text, not a registry reference
    assert upstream.last.body is not None and upstream.last.body["prompt"] == "Say hi"


@pytest.mark.usefixtures("note")
async def test_the_prompts_defaults_are_not_changed_by_a_call(
    client: httpx.AsyncClient, upstream: FakeUpstream
) -> None:
    first = {**by_prompt(), "stream": True}
    async with client.stream("POST", "/v1/chat/completions", headers=AUTH, json=first) as r:
        assert r.status_code == 200
        await r.aread()
    await client.post("/v1/chat/completions", headers=AUTH, json=by_prompt())
    sent = upstream.last.body
    assert sent is not None and "stream_options" not in sent and "stream" not in sent
    shown = await client.get("/admin/prompts/note/versions/1", headers=AUTH)
    assert orjson.dumps(shown.json()["spec"]["params"]) == orjson.dumps(NOTE["params"])
