"""/admin/usage filters name their key and team as the other admin paths do (id, prefix, name); an unknown one is
a 404, never a silently empty report."""

from __future__ import annotations

import httpx
import pytest
from fastapi import FastAPI

from tests.conftest import AUTH, chat


async def usage(client: httpx.AsyncClient, **params: str) -> httpx.Response:
    return await client.get("/admin/usage", headers=AUTH, params={"group_by": "team", **params})


async def test_usage_filters_take_team_names_and_key_prefixes(client: httpx.AsyncClient, app: FastAPI) -> None:
    team = await client.post("/admin/teams", headers=AUTH, json={"name": "research"})
    assert team.status_code == 201, team.text
    created = await client.post("/admin/keys", headers=AUTH, json={"name": "r1", "team": "research"})
    assert created.status_code == 201, created.text
    key = created.json()
    bearer = {"authorization": f"Bearer {key['key']}"}
    for _ in range(2):
        r = await client.post("/v1/chat/completions", headers=bearer, json=chat("demo"))
        assert r.status_code == 200, r.text
    assert (await client.post("/v1/chat/completions", headers=AUTH, json=chat("demo"))).status_code == 200
    await app.state.services.shipper.flush()

    for params in ({"team": "research"}, {"team": team.json()["id"]}, {"key": key["prefix"]}, {"key": key["id"]}):
        r = await usage(client, **params)
        assert r.status_code == 200, r.text
        assert [(row["group"], row["requests"]) for row in r.json()["data"]] == [(team.json()["id"], 2)], params


@pytest.mark.parametrize(("param", "code"), [("team", "team_not_found"), ("key", "key_not_found")])
async def test_usage_for_an_unknown_team_or_key_is_a_404(client: httpx.AsyncClient, param: str, code: str) -> None:
    r = await usage(client, **{param: "nosuch"})
    assert r.status_code == 404, r.text
    assert r.json()["error"]["code"] == code and "'nosuch'" in r.json()["error"]["message"]
