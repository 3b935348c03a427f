"""Tests for /admin/audit and /admin/audit/verify, on a small app holding only what the router reads."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import pytest
from audit_samples import chain, event, execute
from fastapi import FastAPI

from gateway.errors import install_error_handlers
from gateway.identity.auth import Authenticator
from gateway.identity.keycache import KeyCache
from gateway.identity.keys import KeyService
from gateway.routers.audit import router
from gateway.schemas.admin import KeyCreate, TeamCreate
from gateway.storage.db import Database
from tests.conftest import AUTH, MASTER_KEY


@dataclass
class RouterServices:
    """What gateway/routers/audit.py uses of Services."""

    db: Database
    authenticator: Authenticator


@dataclass
class Keys:
    viewer_of_team: dict[str, str]
    viewer_team_id: str
    member: dict[str, str]


@pytest.fixture
async def keys(db: Database) -> Keys:
    service = KeyService(db)
    team = await service.create_team(TeamCreate(name="red"))
    _, viewer = await service.create_key(KeyCreate(name="auditor", team=team.id, role="viewer"))
    _, member = await service.create_key(KeyCreate(name="app", role="member"))
    return Keys({"authorization": f"Bearer {viewer}"}, team.id, {"authorization": f"Bearer {member}"})


@pytest.fixture
async def client(db: Database, keys: Keys) -> AsyncIterator[httpx.AsyncClient]:
    cache = KeyCache(db)
    await cache.reload()
    app = FastAPI()
    install_error_handlers(app)
    app.include_router(router)
    app.state.services = RouterServices(db=db, authenticator=Authenticator(MASTER_KEY, cache))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gateway") as c:
        yield c


async def test_get_audit_lists_newest_first_and_pages_with_before(client: httpx.AsyncClient, db: Database) -> None:
    await chain(db, [event(n) for n in range(1, 6)])
    r = await client.get("/admin/audit", params={"limit": 2}, headers=AUTH)
    assert r.status_code == 200
    body = r.json()
    assert (body["object"], body["has_more"]) == ("list", True)
    assert [(d["seq"], d["subject"]) for d in body["data"]] == [(5, "req_0005"), (4, "req_0004")]
    assert body["data"][0]["details"] == {"tool": "refund", "amount": 52.5, "order": {"id": 5, "tags": ["a", "b"]}}
    r = await client.get("/admin/audit", params={"limit": 10, "before": 4}, headers=AUTH)
    assert ([d["seq"] for d in r.json()["data"]], r.json()["has_more"]) == ([3, 2, 1], False)


async def test_get_audit_filters_by_time_action_and_actor(client: httpx.AsyncClient, db: Database) -> None:
    await chain(
        db, [event(1), event(2, action="approval.created"), event(3, action="approval.approved", actor="key_9")]
    )
    await chain(db, [event(4, actor="master", action="key.revoked")])

    async def seqs(**params: object) -> list[int]:
        r = await client.get("/admin/audit", params=params, headers=AUTH)
        assert r.status_code == 200, r.text
        return [d["seq"] for d in r.json()["data"]]

    assert await seqs(action="approval.*") == [3, 2]
    assert await seqs(action="approval.approved", actor="key_9") == [3]
    assert await seqs(actor="master") == [4]
    assert await seqs(**{"from": "2026-01-02T03:06:05.123456Z", "to": "2026-01-02T03:08:05Z"}) == [3, 2]
    assert await seqs(**{"from": "2026-01-03"}) == []


async def test_get_audit_viewer_of_a_team_sees_only_its_team(
    client: httpx.AsyncClient, db: Database, keys: Keys
) -> None:
    await chain(db, [event(1, actor_team=keys.viewer_team_id), event(2, actor_team="other"), event(3)])
    r = await client.get("/admin/audit", headers=keys.viewer_of_team)
    assert r.status_code == 200
    assert [d["seq"] for d in r.json()["data"]] == [1]


async def test_get_audit_refuses_members_and_anonymous_callers(client: httpx.AsyncClient, keys: Keys) -> None:
    r = await client.get("/admin/audit", headers=keys.member)
    assert (r.status_code, r.json()["error"]["code"]) == (403, "insufficient_role")
    r = await client.get("/admin/audit/verify")
    assert (r.status_code, r.json()["error"]["type"]) == (401, "authentication_error")


async def test_get_audit_bad_parameters_are_400(client: httpx.AsyncClient) -> None:
    r = await client.get("/admin/audit", params={"from": "yesterday"}, headers=AUTH)
    assert (r.status_code, r.json()["error"]["param"]) == (400, "from")
    r = await client.get("/admin/audit", params={"limit": 0}, headers=AUTH)
    assert r.status_code == 400


async def test_get_audit_verify_reports_ok_then_the_edited_record(client: httpx.AsyncClient, db: Database) -> None:
    await chain(db, [event(n) for n in range(1, 4)])
    r = await client.get("/admin/audit/verify", headers=AUTH)
    assert r.status_code == 200
    assert {k: r.json()[k] for k in ("ok", "checked", "first_seq", "last_seq", "broken_seq")} == {
        "ok": True,
        "checked": 3,
        "first_seq": 1,
        "last_seq": 3,
        "broken_seq": None,
    }
    await execute(db, "UPDATE audit_records SET reason = 'nothing to see' WHERE seq = 2")
    body = (await client.get("/admin/audit/verify", headers=AUTH)).json()
    assert (body["ok"], body["broken_seq"], body["checked"]) == (False, 2, 1)
    assert body["reason"].startswith("hash mismatch")
