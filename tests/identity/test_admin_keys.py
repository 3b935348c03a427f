"""Virtual keys and teams through the admin API: hashed storage, roles, rotation, revocation, model access."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import httpx
from sqlmodel import select

from gateway.storage.tables import ApiKey, AuditRecord
from tests.conftest import AUTH, chat


def bearer(secret: str) -> dict[str, str]:
    return {"authorization": f"Bearer {secret}"}


async def create_key(client: httpx.AsyncClient, **spec: object) -> dict[str, object]:
    r = await client.post("/admin/keys", headers=AUTH, json={"name": "k", **spec})
    assert r.status_code == 201, r.text
    return dict(r.json())


async def test_key_is_shown_once_and_stored_hashed(client: httpx.AsyncClient, app) -> None:  # type: ignore[no-untyped-def]
    created = await create_key(client, name="ci-bot")
    secret = str(created["key"])
    assert secret.startswith("sk-gw-") and secret.startswith(str(created["prefix"]))
    listed = (await client.get("/admin/keys", headers=AUTH)).json()["data"]
    assert [k["prefix"] for k in listed] == [created["prefix"]] and listed[0]["key"] is None
    assert (await client.get(f"/admin/keys/{created['id']}", headers=AUTH)).json()["key"] is None
    async with app.state.services.db.session() as session:
        row = (await session.exec(select(ApiKey))).one()
    assert row.key_hash != secret and secret not in row.model_dump_json()
    r = await client.post("/v1/chat/completions", headers=bearer(secret), json=chat("demo", "hi"))
    assert r.status_code == 200


async def test_member_key_cannot_use_admin_routes(client: httpx.AsyncClient) -> None:
    member = str((await create_key(client, role="member"))["key"])
    for method, path in (("GET", "/admin/keys"), ("POST", "/admin/keys"), ("GET", "/admin/usage")):
        r = await client.request(method, path, headers=bearer(member), json={"name": "x"})
        assert r.status_code == 403, (path, r.text)
        assert r.json()["error"]["type"] == "permission_error"


async def test_viewer_reads_usage_but_cannot_call_models(client: httpx.AsyncClient) -> None:
    viewer = str((await create_key(client, role="viewer"))["key"])
    assert (await client.get("/admin/usage", headers=bearer(viewer))).status_code == 200
    r = await client.post("/v1/chat/completions", headers=bearer(viewer), json=chat("demo"))
    assert r.status_code == 403


async def test_revoked_key_stops_working(client: httpx.AsyncClient) -> None:
    created = await create_key(client)
    secret = str(created["key"])
    assert (await client.post("/v1/chat/completions", headers=bearer(secret), json=chat("demo"))).status_code == 200
    r = await client.post(f"/admin/keys/{created['prefix']}/revoke", headers=AUTH)
    assert r.status_code == 200 and r.json()["revoked_at"]
    r = await client.post("/v1/chat/completions", headers=bearer(secret), json=chat("demo"))
    assert r.status_code == 401 and r.json()["error"]["code"] == "key_revoked"


async def test_rotation_replaces_the_secret(client: httpx.AsyncClient) -> None:
    created = await create_key(client)
    old = str(created["key"])
    rotated = (await client.post(f"/admin/keys/{created['id']}/rotate", headers=AUTH)).json()
    assert rotated["id"] == created["id"] and rotated["key"] != old
    assert (await client.post("/v1/chat/completions", headers=bearer(old), json=chat("demo"))).status_code == 401
    r = await client.post("/v1/chat/completions", headers=bearer(rotated["key"]), json=chat("demo"))
    assert r.status_code == 200


async def test_expired_key_is_refused(client: httpx.AsyncClient) -> None:
    soon = datetime.now(UTC) + timedelta(seconds=0.2)  # the admin API refuses an expiry already past
    secret = str((await create_key(client, expires_at=soon.isoformat()))["key"])
    await asyncio.sleep(max(0.0, (soon - datetime.now(UTC)).total_seconds()) + 0.01)
    r = await client.post("/v1/chat/completions", headers=bearer(secret), json=chat("demo"))
    assert r.status_code == 401 and r.json()["error"]["code"] == "key_expired"


async def test_key_and_team_model_lists_both_bind(client: httpx.AsyncClient) -> None:
    r = await client.post("/admin/teams", headers=AUTH, json={"name": "research", "models": ["demo"]})
    assert r.status_code == 201
    team_key = str((await create_key(client, team="research"))["key"])
    r = await client.post("/v1/chat/completions", headers=bearer(team_key), json=chat("gpt-test"))
    assert r.status_code == 403 and r.json()["error"]["code"] == "model_not_allowed"
    assert (await client.post("/v1/chat/completions", headers=bearer(team_key), json=chat("demo"))).status_code == 200
    models = (await client.get("/v1/models", headers=bearer(team_key))).json()["data"]
    assert [m["id"] for m in models] == ["demo"]
    narrow = str((await create_key(client, team="research", models=["gpt-test"]))["key"])
    r = await client.post("/v1/chat/completions", headers=bearer(narrow), json=chat("gpt-test"))
    assert r.status_code == 403  # the key allows it, its team does not


async def test_moving_a_key_to_another_team_applies_that_teams_limits(client: httpx.AsyncClient) -> None:
    await client.post("/admin/teams", headers=AUTH, json={"name": "open"})
    await client.post("/admin/teams", headers=AUTH, json={"name": "closed", "models": []})
    created = await create_key(client, team="open")
    secret = str(created["key"])
    assert (await client.post("/v1/chat/completions", headers=bearer(secret), json=chat("demo"))).status_code == 200
    r = await client.patch(f"/admin/keys/{created['id']}", headers=AUTH, json={"team": "closed"})
    assert r.status_code == 200
    assert (await client.post("/v1/chat/completions", headers=bearer(secret), json=chat("demo"))).status_code == 403


async def test_admin_input_errors_are_openai_shaped(client: httpx.AsyncClient) -> None:
    r = await client.post("/admin/keys", headers=AUTH, json={"name": "x", "budget": -1})
    assert r.status_code == 400 and r.json()["error"]["param"] == "budget"
    r = await client.post("/admin/keys", headers=AUTH, json={"name": "x", "team": "nope"})
    assert r.status_code == 404
    r = await client.post("/admin/teams", headers=AUTH, json={"name": "dup"})
    r = await client.post("/admin/teams", headers=AUTH, json={"name": "dup"})
    assert r.status_code == 400 and "already exists" in r.json()["error"]["message"]
    r = await client.get("/admin/keys/key_missing", headers=AUTH)
    assert r.status_code == 404


async def test_revoking_twice_answers_the_same_and_audits_once(client: httpx.AsyncClient, app) -> None:  # type: ignore[no-untyped-def]
    created = await create_key(client)
    first = await client.post(f"/admin/keys/{created['prefix']}/revoke", headers=AUTH)
    second = await client.post(f"/admin/keys/{created['id']}/revoke", headers=AUTH)
    third = await client.delete(f"/admin/keys/{created['id']}", headers=AUTH)
    assert first.status_code == second.status_code == third.status_code == 200
    assert first.json()["revoked_at"] == second.json()["revoked_at"] == third.json()["revoked_at"] is not None
    await app.state.services.audit.flush()
    async with app.state.services.db.session() as session:
        rows = (await session.exec(select(AuditRecord).where(AuditRecord.action == "key.revoked"))).all()
    assert [(row.subject, row.outcome) for row in rows] == [(created["id"], "done")]
