"""The operator log through the app: one line per request, failed auth bounded, admin changes, never a secret."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest
from fastapi import FastAPI

from gateway.config import GatewayConfig
from gateway.telemetry.config import LogConfig
from gateway.telemetry.logformat import TextFormatter, log_handler
from gateway.telemetry.oplog import FailedAuthLimit
from tests.approvals.conftest import TOOLS, tool_call, tool_reply, write_policy
from tests.conftest import AUTH, MASTER_KEY, MakeConfig, chat
from tests.fake_upstream import FakeUpstream

PROMPT = "the launch code is zebra-4242"
REQUEST_FIELDS = {
    "time", "level", "logger", "event", "request_id", "method", "route", "status", "error", "latency_ms",
    "overhead_ms", "key_id", "team_id", "model", "upstream_model", "stream", "prompt_tokens", "completion_tokens",
    "cost_usd",
}  # fmt: skip


class LogLines:
    """What `gateway serve` writes to stderr, captured: the gateway loggers through the configured formatter."""

    def __init__(self, log: LogConfig) -> None:
        self.stream = io.StringIO()
        self.handler = log_handler(log, self.stream)
        self.logger = logging.getLogger("gateway")

    def __enter__(self) -> LogLines:
        self.saved = (self.logger.level, self.logger.propagate)
        self.logger.addHandler(self.handler)
        self.logger.setLevel(logging.INFO)
        self.logger.propagate = False
        return self

    def __exit__(self, *exc: object) -> None:
        self.logger.removeHandler(self.handler)
        self.logger.level, self.logger.propagate = self.saved

    @property
    def text(self) -> str:
        return self.stream.getvalue()

    def json(self, event: str | None = None) -> list[dict[str, object]]:
        lines = [orjson.loads(line) for line in self.text.splitlines()]
        return [line for line in lines if event is None or line.get("event") == event]


@pytest.fixture
def config(make_config: MakeConfig, tmp_path: Path) -> GatewayConfig:
    folder = write_policy(tmp_path / "policies")
    return make_config(policies=str(folder), log={"failed_auth_per_minute": 5})


@pytest.fixture
def lines(config: GatewayConfig) -> Iterator[LogLines]:
    with LogLines(config.log) as captured:
        yield captured


async def new_key(client: httpx.AsyncClient) -> dict[str, object]:
    assert (await client.post("/admin/teams", headers=AUTH, json={"name": "ops"})).status_code == 201
    r = await client.post("/admin/keys", headers=AUTH, json={"name": "agent", "team": "ops"})
    assert r.status_code == 201
    return dict(r.json())


async def test_a_call_writes_one_json_request_line_without_the_prompt_or_any_secret(
    client: httpx.AsyncClient, upstream: FakeUpstream, lines: LogLines
) -> None:
    key = await new_key(client)
    r = await client.post(
        "/v1/chat/completions", headers={"authorization": f"Bearer {key['key']}"}, json=chat("gpt-test", PROMPT)
    )
    assert r.status_code == 200
    [line] = [line for line in lines.json("request") if line["route"] == "/v1/chat/completions"]
    assert REQUEST_FIELDS <= set(line)
    assert line["request_id"] == r.headers["x-request-id"]
    assert (line["level"], line["logger"], line["method"], line["status"], line["error"]) == (
        "info", "gateway.requests", "POST", 200, None,
    )  # fmt: skip
    assert (line["key_id"], line["team_id"], line["model"]) == (key["id"], key["team_id"], "gpt-test")
    assert line["upstream_model"] == "openai/gpt-4o-mini" and line["stream"] is False
    usage = r.json()["usage"]
    assert (line["prompt_tokens"], line["completion_tokens"]) == (usage["prompt_tokens"], usage["completion_tokens"])
    assert line["cost_usd"] > 0 and 0 < line["overhead_ms"] <= line["latency_ms"]  # type: ignore[operator]
    assert str(line["time"]).endswith("Z")
    for secret in ("zebra-4242", str(key["key"]), MASTER_KEY, "sk-upstream-secret"):
        assert secret not in lines.text


async def test_a_tool_call_held_for_approval_is_on_the_request_line(
    client: httpx.AsyncClient, upstream: FakeUpstream, lines: LogLines, app: FastAPI
) -> None:
    upstream.script(tool_reply(tool_call("refund", {"order_id": "A-1", "amount": 500})))
    r = await client.post("/v1/chat/completions", headers=AUTH, json=chat("gpt-test", "refund it", tools=TOOLS))
    [approval] = r.headers["x-gateway-approvals"].split(",")
    [line] = [line for line in lines.json("request") if line["route"] == "/v1/chat/completions"]
    assert line["approvals_created"] == [approval]
    assert line["decisions"] == [
        {"stage": "tool", "rule": "big-refunds", "action": "require_approval", "approval_id": approval}
    ]
    assert line["policy_sha256"] == app.state.services.policies.current.sha256
    [admin] = lines.json("admin")  # the approval's creation is an audited change, on a line of its own
    assert (admin["action"], admin["subject"], admin["actor"]) == ("approval.created", approval, "master")


async def test_a_flood_of_bad_keys_writes_a_bounded_number_of_lines(
    client: httpx.AsyncClient, upstream: FakeUpstream, lines: LogLines
) -> None:
    for i in range(40):
        wrong = {"authorization": f"Bearer sk-wrong-{i:04d}-secret"}
        if i % 2:
            r = await client.post("/v1/chat/completions", headers=wrong, json=chat("demo"))
        else:
            r = await client.get("/admin/keys", headers=wrong)
        assert r.status_code == 401
    written = lines.json()
    assert len(written) == 5  # log.failed_auth_per_minute; the other 35 are counted for the next line
    assert {line["event"] for line in written} == {"auth_failed"}
    assert {line["error"] for line in written} == {"invalid_api_key"}
    assert written[0]["client"] == "127.0.0.1" and written[0]["level"] == "warning"
    assert "sk-wrong" not in lines.text and len(upstream.requests) == 0


def test_failed_auth_limit_counts_what_it_leaves_out_and_says_so_on_the_next_line() -> None:
    now = [0.0]
    limit = FailedAuthLimit(3, clock=lambda: now[0])
    assert [limit.admit() for _ in range(10)] == [0, 0, 0, None, None, None, None, None, None, None]
    now[0] = 59.9
    assert limit.admit() is None
    now[0] = 60.0
    assert [limit.admit() for _ in range(4)] == [8, 0, 0, None]


async def test_creating_a_key_writes_an_admin_line_without_the_secret(
    client: httpx.AsyncClient, lines: LogLines
) -> None:
    key = await new_key(client)
    admin = lines.json("admin")
    assert [(a["action"], a["actor"], a["actor_role"], a["outcome"]) for a in admin] == [
        ("team.created", "master", "admin", "done"),
        ("key.created", "master", "admin", "done"),
    ]
    assert admin[1]["subject"] == key["id"] and admin[1]["logger"] == "gateway.admin"
    assert str(key["key"]) not in lines.text and MASTER_KEY not in lines.text
    requests = [(line["method"], line["route"], line["status"]) for line in lines.json("request")]
    assert requests == [("POST", "/admin/teams", 201), ("POST", "/admin/keys", 201)]


async def test_refused_requests_get_a_line_with_their_error_code_and_probes_none(
    client: httpx.AsyncClient, lines: LogLines
) -> None:
    assert (await client.get("/v1/nowhere")).status_code == 404
    bad = await client.post("/v1/chat/completions", headers=AUTH, content=b"{not json")
    assert bad.status_code == 400
    assert (await client.post("/admin/keys", headers=AUTH, json={"name": 7})).status_code == 400
    assert (await client.get("/readyz")).status_code == 200 and (await client.get("/healthz")).status_code == 200
    got = [(line["route"], line["status"], line["error"]) for line in lines.json("request")]
    assert got == [
        ("/v1/nowhere", 404, "not_found"),
        ("/v1/chat/completions", 400, bad.json()["error"]["code"]),
        ("/admin/keys", 400, "invalid_value"),
    ]


async def test_request_log_off_writes_no_request_lines(
    make_config: MakeConfig, upstream: FakeUpstream, tmp_path: Path
) -> None:
    from gateway.app import create_app

    config = make_config(log={"requests": False})
    app = create_app(config, freeze_gc=False)
    with LogLines(config.log) as lines:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:
                assert (await client.post("/v1/chat/completions", headers=AUTH, json=chat("demo"))).status_code == 200
                assert (await client.post("/admin/keys", headers=AUTH, json={"name": "k"})).status_code == 201
    assert lines.json("request") == []
    assert [line["action"] for line in lines.json("admin")] == ["key.created"]  # admin lines stay


def test_text_format_is_one_readable_line_per_record() -> None:
    record = logging.LogRecord("gateway.requests", logging.INFO, "", 0, {"event": "request", "route": "/v1/x",
                               "status": 200, "error": None, "model": "a b"}, None, None)  # fmt: skip
    record.created = 0.0
    assert TextFormatter().format(record) == (
        '1970-01-01T00:00:00.000Z INFO    gateway.requests event=request route=/v1/x status=200 model="a b"'
    )


def test_log_settings_come_from_the_file_and_the_environment_overrides_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from gateway.settings import Settings

    file = tmp_path / "gateway.yaml"
    file.write_text("log: {format: text, level: warning, failed_auth_per_minute: 3}\n")
    assert Settings(config=file).resolve().log == LogConfig(format="text", level="warning", failed_auth_per_minute=3)
    monkeypatch.setenv("GATEWAY_LOG_FORMAT", "JSON")
    monkeypatch.setenv("GATEWAY_LOG_REQUESTS", "false")
    log = Settings(config=file).resolve().log
    assert (log.format, log.level, log.requests, log.failed_auth_per_minute) == ("json", "warning", False, 3)
