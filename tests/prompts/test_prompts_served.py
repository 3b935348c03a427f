"""Prompts kept in git and served for real: `gateway prompts sync|label|export` against `gateway serve`, the
official openai SDK calling a prompt by label, a rollback; two instances on one Postgres see a label move."""

from __future__ import annotations

import asyncio
import json
import shutil
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack
from pathlib import Path

import httpx
import openai
import pytest

from gateway.app import create_app
from gateway.cli import main
from tests.conftest import AUTH, MASTER_KEY, MakeConfig
from tests.fake_upstream import FakeUpstream
from tests.servers import ServedGateway

REPO = Path(__file__).resolve().parents[2]
VARIABLES = {"product": "Acme", "tier": "enterprise", "queues": ["billing", "bugs"]}


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, upstream_server: FakeUpstream) -> Iterator[ServedGateway]:
    folder = tmp_path_factory.mktemp("prompts")
    config = folder / "gateway.yaml"
    config.write_text(
        f"""
models:
  - name: gpt-4o-mini
    model: openai/gpt-4o-mini
    api_base: {upstream_server.base_url}
database_url: sqlite:///{folder / "gateway.db"}
spool_dir: {folder / "spool"}
"""
    )
    server = ServedGateway(config).start()
    try:
        yield server
    finally:
        server.stop()


def cli(served: ServedGateway, *args: str) -> None:
    assert main([*args, "--url", served.url, "--key", MASTER_KEY]) == 0


def ask(served: ServedGateway, upstream: FakeUpstream) -> str:
    """The SDK calls the prompt by label; returns the system message the upstream received."""
    sdk = openai.OpenAI(base_url=f"{served.url}/v1", api_key=MASTER_KEY, max_retries=0)
    completion = sdk.chat.completions.create(
        model="prompt:support-triage@production",
        messages=[{"role": "user", "content": "The app crashes on login"}],
        extra_body={"prompt": {"variables": VARIABLES}},
    )
    assert completion.choices[0].message.content
    sent = upstream.last.body
    assert sent is not None and sent["messages"][-1] == {"role": "user", "content": "The app crashes on login"}
    assert sent["response_format"] == {"type": "json_object"} and sent["temperature"] == 0
    return str(sent["messages"][0]["content"])


def test_sync_label_call_edit_rollback_export(
    served: ServedGateway, upstream_server: FakeUpstream, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    upstream_server.reset()
    folder = tmp_path / "prompts"
    shutil.copytree(REPO / "prompts", folder)
    cli(served, "prompts", "sync", str(folder))
    assert "support-triage new version 1" in capsys.readouterr().out
    cli(served, "prompts", "sync", str(folder))
    assert "support-triage unchanged 1" in capsys.readouterr().out  # idempotent

    cli(served, "prompts", "label", "support-triage", "production", "1")
    first = ask(served, upstream_server)
    assert "triage customer messages for Acme" in first and "1-hour response target" in first

    edited = (folder / "support-triage.yaml").read_text().replace("You triage", "You carefully triage")
    (folder / "support-triage.yaml").write_text(edited.replace("First version", "More care"))
    cli(served, "prompts", "sync", str(folder), "--label", "staging")
    assert "support-triage new version 2, staging -> 2" in capsys.readouterr().out
    cli(served, "prompts", "label", "support-triage", "production", "2")
    assert "carefully" in ask(served, upstream_server)
    cli(served, "prompts", "label", "support-triage", "production", "1")  # rollback
    assert "carefully" not in ask(served, upstream_server)

    cli(served, "prompts", "diff", "support-triage", "1", "2")
    assert "+    You carefully triage" in capsys.readouterr().out
    exported = tmp_path / "exported"
    cli(served, "prompts", "export", str(exported))
    assert "support-triage version 2" in capsys.readouterr().out
    cli(served, "prompts", "sync", str(exported))
    assert "support-triage unchanged 2" in capsys.readouterr().out  # export round-trips


def test_cli_create_list_versions_get_and_refusals(
    served: ServedGateway, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = "id: cli-note\nmessages:\n- role: system\n  content: Hello {{ name }}\ncommit_message: first\n"
    (tmp_path / "note.yaml").write_text(text)
    cli(served, "prompts", "create", str(tmp_path / "note.yaml"))
    assert "cli-note   1" in capsys.readouterr().out
    cli(served, "prompts", "list")
    assert any(line.split()[:2] == ["cli-note", "1"] for line in capsys.readouterr().out.splitlines())
    cli(served, "prompts", "versions", "cli-note")
    out = capsys.readouterr().out
    assert out.startswith("labels: latest=1") and "name" in out and "first" in out
    cli(served, "prompts", "get", "cli-note", "--version", "1")
    assert capsys.readouterr().out == text  # the file as written: what export writes and sync reads back
    cli(served, "prompts", "get", "cli-note", "--json")
    assert json.loads(capsys.readouterr().out)["variables"] == ["name"]

    (tmp_path / "bad.yaml").write_text("id: cli-note\nmessages: []\ncolour: red\n")
    with pytest.raises(SystemExit, match=r"bad.yaml: colour: .*Extra inputs"):
        main(["prompts", "create", str(tmp_path / "bad.yaml"), "--url", served.url, "--key", MASTER_KEY])
    with pytest.raises(SystemExit, match="404: Prompt 'cli-note' has no version 9"):
        main(["prompts", "label", "cli-note", "staging", "9", "--url", served.url, "--key", MASTER_KEY])


def test_unknown_prompt_through_the_sdk_is_a_404(served: ServedGateway) -> None:
    sdk = openai.OpenAI(base_url=f"{served.url}/v1", api_key=MASTER_KEY, max_retries=0)
    with pytest.raises(openai.NotFoundError) as raised:
        sdk.chat.completions.create(model="prompt:nope@production", messages=[{"role": "user", "content": "x"}])
    assert raised.value.code == "prompt_not_found" and "No prompt 'nope'" in raised.value.message


@pytest.fixture
async def pair(make_config: MakeConfig, tmp_path: Path, postgres_url: str) -> AsyncIterator[list[httpx.AsyncClient]]:
    clients = []
    async with AsyncExitStack() as stack:
        for name in ("a", "b"):
            app = create_app(make_config(database_url=postgres_url, spool_dir=str(tmp_path / name)))
            await stack.enter_async_context(app.router.lifespan_context(app))
            client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=f"http://{name}")
            clients.append(await stack.enter_async_context(client))
        yield clients


async def test_a_label_move_reaches_the_other_instance(pair: list[httpx.AsyncClient], upstream: FakeUpstream) -> None:
    a, b = pair
    for text in ("one", "two"):
        spec = {"id": "p", "messages": [{"role": "system", "content": text}]}
        assert (await a.post("/admin/prompts", headers=AUTH, json=spec)).status_code == 201
    await a.put("/admin/prompts/p/labels/production", headers=AUTH, json={"version": 1})
    body = {"model": "gpt-test", "messages": [], "prompt": {"id": "p", "label": "production"}}

    async def system_on_b() -> str:
        r = await b.post("/v1/chat/completions", headers=AUTH, json=body)
        assert upstream.last.body is not None, r.text
        return str(upstream.last.body["messages"][0]["content"])

    async with asyncio.timeout(2):
        while (await b.post("/v1/chat/completions", headers=AUTH, json=body)).status_code != 200:
            await asyncio.sleep(0.05)  # b learns of the new prompt within its 0.5 s poll
    assert await system_on_b() == "one"
    await a.put("/admin/prompts/p/labels/production", headers=AUTH, json={"version": 2})
    moved_at = time.monotonic()
    while await system_on_b() != "two":
        assert time.monotonic() - moved_at < 1.5, "instance b kept serving the old version"
        await asyncio.sleep(0.05)
