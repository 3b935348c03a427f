"""applies_to.keys through the app: a policy names a key by id or by a prefix it has had, and keeps applying to
that key across rotation and restarts; an entry that matches no key is a warning (log, admin API, CLI)."""

from __future__ import annotations

import logging
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from gateway.app import create_app
from gateway.cli import main
from gateway.config import GatewayConfig
from tests.conftest import AUTH, MakeConfig, chat

SCOPED = "name: acme\napplies_to: {{keys: [{ref}]}}\nguardrails:\n" \
         "  - {{id: no-acme, stage: input, check: keywords, params: {{words: [acme]}}}}\n"  # fmt: skip


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    folder = tmp_path / "policies"
    folder.mkdir()
    (folder / "acme.yaml").write_text("name: acme\n")
    return folder


@pytest.fixture
def config(make_config: MakeConfig, folder: Path) -> GatewayConfig:
    return make_config(policies=str(folder))


def bearer(secret: str) -> dict[str, str]:
    return {"authorization": f"Bearer {secret}"}


async def ask(client: httpx.AsyncClient, secret: str) -> int:
    r = await client.post("/v1/chat/completions", headers=bearer(secret), json=chat("demo", "tell me about acme"))
    assert r.status_code == 200 or r.json()["error"]["code"] == "policy_denied", r.text
    return r.status_code


async def scope_to_new_key(client: httpx.AsyncClient, folder: Path, by: str) -> dict[str, str]:
    """Creates a key and points the acme policy at it (by "id" or "prefix"); returns the key as created."""
    created = (await client.post("/admin/keys", headers=AUTH, json={"name": "scoped"})).json()
    (folder / "acme.yaml").write_text(SCOPED.format(ref=created[by]))
    assert (await client.post("/admin/policies/reload", headers=AUTH)).status_code == 200
    return dict(created)


@pytest.mark.parametrize("by", ["prefix", "id"])
async def test_policy_scoped_to_a_key_still_applies_after_rotation(
    client: httpx.AsyncClient, folder: Path, by: str
) -> None:
    key = await scope_to_new_key(client, folder, by)
    other = (await client.post("/admin/keys", headers=AUTH, json={"name": "other"})).json()["key"]
    assert await ask(client, key["key"]) == 403
    assert await ask(client, other) == 200  # the policy is scoped to one key
    rotated = (await client.post(f"/admin/keys/{key['prefix']}/rotate", headers=AUTH)).json()
    assert rotated["id"] == key["id"] and rotated["prefix"] != key["prefix"]
    assert await ask(client, rotated["key"]) == 403
    twice = (await client.post(f"/admin/keys/{rotated['prefix']}/rotate", headers=AUTH)).json()
    assert await ask(client, twice["key"]) == 403
    assert await ask(client, other) == 200
    assert (await client.get("/admin/policies", headers=AUTH)).json()["warnings"] == []


async def test_policy_by_a_former_prefix_applies_after_a_restart(
    client: httpx.AsyncClient, folder: Path, config: GatewayConfig
) -> None:
    key = await scope_to_new_key(client, folder, "prefix")
    rotated = (await client.post(f"/admin/keys/{key['id']}/rotate", headers=AUTH)).json()
    restarted = create_app(config, freeze_gc=False)  # a new process on the same database and files
    async with restarted.router.lifespan_context(restarted):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=restarted), base_url="http://g") as c:
            assert await ask(c, rotated["key"]) == 403
            assert (await c.get(f"/admin/keys/{key['prefix']}", headers=AUTH)).json()["id"] == key["id"]


async def test_unknown_key_in_applies_to_is_a_warning_in_the_log_and_the_admin_api(
    client: httpx.AsyncClient, folder: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (folder / "acme.yaml").write_text(SCOPED.format(ref="sk-gw-nokey0"))
    with caplog.at_level(logging.WARNING, logger="gateway.policies"):
        r = await client.post("/admin/policies/reload", headers=AUTH)
    assert r.status_code == 200
    expected = f"{folder / 'acme.yaml'}: applies_to.keys: 'sk-gw-nokey0' matches no key (neither a key id nor a " \
               "prefix any key has had)"  # fmt: skip
    assert r.json()["warnings"] == [expected]
    assert [rec.getMessage() for rec in caplog.records] == [expected + "; the policy applies to no call by it"]


async def test_unknown_key_warning_is_logged_at_startup(
    folder: Path, config: GatewayConfig, caplog: pytest.LogCaptureFixture
) -> None:
    (folder / "acme.yaml").write_text(SCOPED.format(ref="key_0000"))
    app = create_app(config, freeze_gc=False)
    with caplog.at_level(logging.WARNING, logger="gateway.policies"):
        async with app.router.lifespan_context(app):
            pass
    assert ["'key_0000' matches no key" in rec.getMessage() for rec in caplog.records] == [True]


async def test_policy_check_cli_warns_about_keys_of_its_config_database(
    client: httpx.AsyncClient, app: FastAPI, folder: Path, tmp_path: Path, config: GatewayConfig,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    key = await scope_to_new_key(client, folder, "prefix")
    await client.post(f"/admin/keys/{key['id']}/rotate", headers=AUTH)  # the file names the former prefix
    (folder / "typo.yaml").write_text(SCOPED.format(ref="sk-gw-typo00").replace("acme", "typo"))
    config_file = tmp_path / "gateway.yaml"
    config_file.write_text(f"models: [{{name: demo, model: fake/echo}}]\ndatabase_url: {config.database_url}\n")
    assert main(["policy", "check", str(folder), "--config", str(config_file)]) == 0
    out = capsys.readouterr().out
    warnings = [line for line in out.splitlines() if line.startswith("warning:")]
    assert warnings == [f"warning: {folder / 'typo.yaml'}: applies_to.keys: 'sk-gw-typo00' matches no key "
                        "(neither a key id nor a prefix any key has had)"]  # fmt: skip
    assert main(["policy", "check", str(folder)]) == 0
    assert "not checked against the keys (give --config" in capsys.readouterr().out


def test_policy_check_cli_with_a_config_whose_database_is_missing_exits_2(
    folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config_file = tmp_path / "gateway.yaml"
    config_file.write_text(f"models: []\ndatabase_url: sqlite:///{tmp_path / 'none.db'}\n")
    assert main(["policy", "check", str(folder), "--config", str(config_file)]) == 2
    assert f"no such file {tmp_path / 'none.db'}" in capsys.readouterr().err
    assert not (tmp_path / "none.db").exists()  # a check creates nothing
