"""Admin writes refuse an expiry in the past (400 naming expires_at) and flag allowed models the gateway does not
serve (accepted, since a list may name a model configured later, with a `warnings` entry naming it)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import pytest

from tests.conftest import AUTH

PAST = "2020-01-01T00:00:00Z"
FUTURE = (datetime.now(UTC) + timedelta(days=30)).isoformat()


@pytest.mark.parametrize("seconds_ago", [None, 5], ids=["2020", "5s-ago"])
async def test_an_expiry_in_the_past_is_a_400_on_create_and_update(
    client: httpx.AsyncClient, seconds_ago: int | None
) -> None:
    expires_at = PAST if seconds_ago is None else (datetime.now(UTC) - timedelta(seconds=seconds_ago)).isoformat()
    r = await client.post("/admin/keys", headers=AUTH, json={"name": "k", "expires_at": expires_at})
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["type"] == "invalid_request_error" and error["param"] == "expires_at"
    assert "is in the past" in error["message"]

    created = await client.post("/admin/keys", headers=AUTH, json={"name": "k", "expires_at": FUTURE})
    assert created.status_code == 201, created.text
    ref = created.json()["prefix"]
    r = await client.patch(f"/admin/keys/{ref}", headers=AUTH, json={"expires_at": expires_at})
    assert r.status_code == 400 and r.json()["error"]["param"] == "expires_at"
    cleared = await client.patch(f"/admin/keys/{ref}", headers=AUTH, json={"expires_at": None})
    assert cleared.status_code == 200 and cleared.json()["expires_at"] is None


async def test_an_update_needs_an_expiry_with_a_timezone(client: httpx.AsyncClient) -> None:
    created = await client.post("/admin/keys", headers=AUTH, json={"name": "k"})
    naive = {"expires_at": "2999-01-01T00:00:00"}
    r = await client.patch(f"/admin/keys/{created.json()['id']}", headers=AUTH, json=naive)
    assert r.status_code == 400 and "needs a timezone" in r.json()["error"]["message"]


async def test_allowed_models_the_gateway_does_not_serve_are_accepted_with_a_warning(client: httpx.AsyncClient) -> None:
    writes = [
        ("POST", "/admin/teams", {"name": "t", "models": ["demo", "nosuchmodel"]}, 201),
        ("PATCH", "/admin/teams/t", {"models": ["nosuchmodel"]}, 200),
        ("POST", "/admin/keys", {"name": "k", "team": "t", "models": ["nosuchmodel", "demo"]}, 201),
    ]
    for method, path, body, status in writes:
        r = await client.request(method, path, headers=AUTH, json=body)
        assert r.status_code == status, r.text
        assert r.json()["models"] == body["models"]  # accepted: a model may be configured later
        (warning,) = r.json()["warnings"]
        assert "'nosuchmodel' is not a model this gateway serves" in warning, path
    key = r.json()["id"]
    r = await client.patch(f"/admin/keys/{key}", headers=AUTH, json={"models": ["demo", "gpt-test"]})
    assert r.status_code == 200 and r.json()["warnings"] == []
    assert (await client.get(f"/admin/keys/{key}", headers=AUTH)).json()["warnings"] == []
