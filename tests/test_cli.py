"""The `gateway` command: config check, and the admin twins (keys, teams, usage) against a served gateway."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import httpx
import pytest

from gateway import admin_client
from gateway.cli import main
from gateway.storage.db import HEAD_REVISION
from tests.conftest import MASTER_KEY
from tests.servers import ServedGateway
from tests.test_cli_startup import heavy_in, imported_modules


def test_config_check_accepts_good_and_names_the_bad_field(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = tmp_path / "good.yaml"
    good.write_text("models:\n  - {name: demo, model: fake/echo}\n")
    assert main(["config", "check", str(good)]) == 0
    assert "ok, 1 models" in capsys.readouterr().out
    bad = tmp_path / "bad.yaml"
    bad.write_text("models:\n  - {name: demo, model: fake/echo, timeout_s: soon}\n")
    assert main(["config", "check", str(bad)]) == 2
    assert f"{bad}: models[0].timeout_s: Input should be a valid number" in capsys.readouterr().err


def test_serve_refuses_several_workers_without_redis(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "g.yaml"
    config.write_text("models: []\n")
    assert main(["serve", "--config", str(config), "--workers", "2"]) == 2
    assert "needs redis_url" in capsys.readouterr().err


def test_migrate_brings_a_new_database_to_head_and_reports_a_broken_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "g.yaml"
    config.write_text(f"models: []\ndatabase_url: sqlite:///{tmp_path / 'data' / 'g.db'}\n")
    assert main(["migrate", "--config", str(config)]) == 0
    assert f"g.db is at schema revision {HEAD_REVISION}" in capsys.readouterr().out
    with closing(sqlite3.connect(tmp_path / "data" / "g.db")) as connection:
        assert connection.execute("SELECT version_num FROM alembic_version").fetchall() == [(HEAD_REVISION,)]
        assert connection.execute("SELECT count(*) FROM usage_records").fetchone() == (0,)
        connection.execute("UPDATE alembic_version SET version_num = '9999'")  # as a newer gateway leaves it
        connection.commit()
    assert main(["migrate", "--config", str(config)]) == 1
    assert "to head failed" in capsys.readouterr().err
    config.write_text("models: []\ndatabase_url: postgresql://gw:s3cret@127.0.0.1:1/gateway\n")
    assert main(["migrate", "--config", str(config)]) == 1
    err = capsys.readouterr().err
    assert "postgresql://gw:***@127.0.0.1:1/gateway" in err and "s3cret" not in err


GATED_POLICY = """
name: cli
tools:
  default: allow
  rules:
    - {id: shell-gate, match: "shell.*", action: require_approval, approvers: {roles: [approver]}}
"""


@pytest.fixture(scope="module")
def served_config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("cli")
    (folder / "policies").mkdir()
    (folder / "policies" / "cli.yaml").write_text(GATED_POLICY)
    config = folder / "gateway.yaml"
    config.write_text(
        f"models:\n  - {{name: a, model: fake/echo}}\n  - {{name: b, model: fake/echo}}\n"
        f"  - {{name: agent, model: 'fake/tool_call:shell.exec'}}\n"
        f"database_url: sqlite:///{folder / 'g.db'}\nspool_dir: {folder / 'spool'}\n"
        f"policies: {folder / 'policies'}\n"
    )
    return config


@pytest.fixture(scope="module")
def served(served_config: Path) -> Iterator[str]:
    server = ServedGateway(served_config).start()
    try:
        yield server.url
    finally:
        server.stop()


def run(capsys: pytest.CaptureFixture[str], url: str, *argv: str) -> str:
    assert main([*argv, "--url", url, "--key", MASTER_KEY]) == 0
    return capsys.readouterr().out


def test_cli_keys_lifecycle_as_the_issue_shows_it(served: str, capsys: pytest.CaptureFixture[str]) -> None:
    run(capsys, served, "teams", "create", "--name", "T", "--budget", "100")
    created = json.loads(
        run(capsys, served, "keys", "create", "--team", "T", "--budget", "25", "--period", "monthly",
            "--rpm", "60", "--tpm", "100000", "--models", "a,b", "--json")
    )  # fmt: skip
    assert created["budget"] == 25 and created["rpm"] == 60 and created["tpm"] == 100000
    assert created["models"] == ["a", "b"] and created["period"] == "monthly"
    secret = created["key"]
    reply = httpx.post(f"{served}/v1/chat/completions", headers={"authorization": f"Bearer {secret}"},
                       json={"model": "a", "messages": [{"role": "user", "content": "hi"}]})  # fmt: skip
    assert reply.status_code == 200

    listing = run(capsys, served, "keys", "list")
    assert created["prefix"] in listing and secret not in listing
    updated = json.loads(
        run(capsys, served, "keys", "update", created["prefix"], "--rpm", "5", "--clear", "budget", "--json")
    )
    assert updated["rpm"] == 5 and updated["budget"] is None
    rotated = json.loads(run(capsys, served, "keys", "rotate", created["id"], "--json"))
    assert rotated["key"] != secret
    revoked = json.loads(run(capsys, served, "keys", "revoke", created["id"], "--json"))
    assert revoked["revoked_at"] is not None
    assert created["prefix"] not in run(capsys, served, "keys", "list")


def usage_counts(capsys: pytest.CaptureFixture[str], url: str) -> dict[str, int]:
    lines = run(capsys, url, "usage", "--group-by", "model", "--format", "csv").splitlines()
    assert lines[0].startswith("group,requests,errors,prompt_tokens,completion_tokens,cached_tokens,cost_usd")
    return {line.split(",")[0]: int(line.split(",")[1]) for line in lines[1:]}


def test_cli_usage_formats(served: str, capsys: pytest.CaptureFixture[str]) -> None:
    time.sleep(0.6)  # let the shipper (every 0.5 s) catch up with earlier tests' requests
    before = usage_counts(capsys, served)
    for model in ("a", "a", "b"):
        httpx.post(f"{served}/v1/chat/completions", headers={"authorization": f"Bearer {MASTER_KEY}"},
                   json={"model": model, "messages": [{"role": "user", "content": "hello there"}]})  # fmt: skip
    expected = {"a": before.get("a", 0) + 2, "b": before.get("b", 0) + 1}
    deadline = time.monotonic() + 3
    while usage_counts(capsys, served) != expected:
        assert time.monotonic() < deadline, "usage records did not reach the database within 3 s"
        time.sleep(0.1)
    table = run(capsys, served, "usage", "--group-by", "model")
    assert table.splitlines()[0].split()[:2] == ["group", "requests"] and "total" in table


def test_cli_admin_errors_exit_with_the_message(served: str) -> None:
    with pytest.raises(SystemExit, match="404: No key 'key_nope'"):
        main(["keys", "show", "key_nope", "--url", served, "--key", MASTER_KEY])
    with pytest.raises(SystemExit, match="401"):
        main(["keys", "list", "--url", served, "--key", "sk-wrong-key-000000"])


@pytest.mark.parametrize(
    "argv",
    [("prompts", "show", "../keys"), ("keys", "show", "../teams"), ("approvals", "show", "../../admin/keys"),
     ("prompts", "get", "x", "--label", "../../../keys")],
)  # fmt: skip
def test_cli_path_arguments_are_encoded_and_name_no_other_path(
    served: str, capsys: pytest.CaptureFixture[str], argv: tuple[str, ...]
) -> None:
    run(capsys, served, "keys", "create", "--name", "listed")
    with pytest.raises(SystemExit, match="gateway: 404"):
        main([*argv, "--json", "--url", served, "--key", MASTER_KEY])
    assert capsys.readouterr().out == ""  # was the key list: the client resolved /admin/prompts/../keys


PROMPT = "id: greet\nmodel: a\nmessages:\n  - {role: system, content: 'Greet {{ name }}.'}\n"


def test_cli_export_never_overwrites_a_changed_file_without_force(
    served: str, capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = tmp_path / "greet-source.yaml"
    source.write_text(PROMPT)
    run(capsys, served, "prompts", "create", str(source))
    monkeypatch.chdir(tmp_path)
    run(capsys, served, "prompts", "export")  # no DIR: ./prompts
    exported = tmp_path / "prompts" / "greet.yaml"
    first = exported.read_text()
    assert first.startswith("# yaml-language-server: $schema=schema.json\n") and "Greet {{ name }}." in first

    commented = first + "# a note of ours\n"
    exported.write_text(commented)  # the same content, with a comment: left as it is
    assert "greet.yaml: greet version 1, unchanged" in run(capsys, served, "prompts", "export")
    assert exported.read_text() == commented

    edited = commented.replace("Greet", "Welcome")
    exported.write_text(edited)  # a local edit: kept, reported, exit 1
    assert main(["prompts", "export", "--url", served, "--key", MASTER_KEY]) == 1
    assert "greet.yaml: differs from greet version 1; not overwritten" in capsys.readouterr().err
    assert exported.read_text() == edited

    run(capsys, served, "prompts", "export", "--force")
    assert exported.read_text() == first


def cli_process(*argv: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "GATEWAY_MASTER_KEY": MASTER_KEY, "PYTHONPATH": str(Path(__file__).parents[1])}
    command = [sys.executable, "-m", "gateway", *argv]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)


@pytest.mark.parametrize("command", ["keys", "audit"])
def test_cli_output_into_a_closed_pipe_exits_quietly(
    served: str, served_config: Path, capsys: pytest.CaptureFixture[str], command: str
) -> None:
    """`gateway keys list | true`, `gateway audit export | head -0`: the reader is gone before the first write."""
    for n in range(3):
        run(capsys, served, "keys", "create", "--name", f"piped-{n}")  # rows to list, and audit records to export
    argv = ["keys", "list", "--url", served] if command == "keys" else ["audit", "export", "--config"]
    process = cli_process(*argv, *([] if command == "keys" else [str(served_config)]))
    assert process.stdout is not None and process.stderr is not None
    process.stdout.close()  # as `true` does, long before the command has anything to write
    with process.stderr:
        stderr = process.stderr.read().decode()
    assert process.wait(timeout=60) == 141, stderr
    assert "Traceback" not in stderr and "BrokenPipeError" not in stderr


def test_cli_approvals_wait_exits_75_while_still_pending(
    served: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(admin_client, "TIMEOUT_S", 0.3)  # shorter than the wait: the wait sets its own
    reply = httpx.post(f"{served}/v1/chat/completions", headers={"authorization": f"Bearer {MASTER_KEY}"},
                       json={"model": "agent", "messages": [{"role": "user", "content": "ls"}]})  # fmt: skip
    assert reply.status_code == 200, reply.text
    approval_id = reply.headers["x-gateway-approvals"]
    assert main(["approvals", "wait", approval_id, "--timeout", "1", "--url", served, "--key", MASTER_KEY]) == 75
    captured = capsys.readouterr()
    assert approval_id in captured.out and "pending" in captured.out
    assert f"{approval_id} is still pending after 1 s" in captured.err
    assert main(["approvals", "cancel", approval_id, "--url", served, "--key", MASTER_KEY]) == 0
    assert main(["approvals", "wait", approval_id, "--timeout", "0.2", "--url", served, "--key", MASTER_KEY]) == 0


def test_cli_warns_of_unserved_models_and_refuses_a_past_expiry(
    served: str, capsys: pytest.CaptureFixture[str]
) -> None:
    for argv in (("teams", "create", "--name", "W", "--models", "a,nosuchmodel"),
                 ("keys", "create", "--name", "w", "--models", "nosuchmodel"),
                 ("teams", "update", "W", "--models", "nosuchmodel")):  # fmt: skip
        assert main([*argv, "--url", served, "--key", MASTER_KEY]) == 0
        err = capsys.readouterr().err
        assert "gateway: warning: models: 'nosuchmodel' is not a model this gateway serves" in err, argv
    with pytest.raises(SystemExit, match="400: expires_at: .* is in the past"):
        main(["keys", "create", "--expires", "2020-01-01T00:00:00Z", "--url", served, "--key", MASTER_KEY])


def test_cli_admin_commands_against_a_server_import_nothing_heavy(served: str) -> None:
    """keys list and prompts list speak HTTP through the standard library; usage renders rows without the database."""
    for argv in (("keys", "list"), ("prompts", "list")):
        assert heavy_in(imported_modules(*argv, "--url", served, "--key", MASTER_KEY)) == [], argv
    usage = heavy_in(imported_modules("usage", "--group-by", "model", "--url", served, "--key", MASTER_KEY))
    assert [m for m in usage if m.split(".")[0] != "pydantic"] == []  # UsageRow is a pydantic model
