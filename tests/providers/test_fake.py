"""The fake provider through the app: it honours timeout_s like every provider; dispatch logs fallbacks truly."""

from __future__ import annotations

import logging
import re
import time
from collections.abc import AsyncIterator

import httpx
import pytest

from gateway.app import create_app
from tests.conftest import AUTH, MakeConfig, chat


async def client_for(make_config: MakeConfig, models: list[dict[str, object]]) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(make_config(models=models), freeze_gc=False)
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://g") as c:
            yield c


@pytest.fixture
async def client(make_config: MakeConfig) -> AsyncIterator[httpx.AsyncClient]:
    models: list[dict[str, object]] = [
        {"name": "late", "model": "fake/slow:3000", "timeout_s": 0.2},
        {"name": "in-time", "model": "fake/slow:50", "timeout_s": 0.2},
        {"name": "late-stream", "model": "fake/slow:3000", "timeout_s": 0.1},  # 0.3 s between events
        {"name": "flaky", "model": "fake/error:503", "max_retries": 0, "fallbacks": ["also-flaky", "demo"]},
        {"name": "also-flaky", "model": "fake/error:502", "max_retries": 0},
        {"name": "lonely", "model": "fake/error:503", "max_retries": 0},
        {"name": "doomed", "model": "fake/error:503", "max_retries": 0, "fallbacks": ["also-flaky"]},
        {"name": "demo", "model": "fake/echo"},
    ]
    async for c in client_for(make_config, models):
        yield c


async def test_slow_fake_answer_past_timeout_is_504_after_the_timeout(client: httpx.AsyncClient) -> None:
    started = time.perf_counter()
    r = await client.post("/v1/chat/completions", headers=AUTH, json=chat("late", "hi"))
    elapsed = time.perf_counter() - started
    assert r.status_code == 504, r.text
    assert r.json()["error"]["code"] == "provider_timeout"
    assert "'late' did not answer within 0.2 s" in r.json()["error"]["message"]
    assert 0.2 <= elapsed < 1.5  # the timeout, not the 3 s the fake would take


async def test_slow_fake_answer_within_timeout_is_200(client: httpx.AsyncClient) -> None:
    r = await client.post("/v1/chat/completions", headers=AUTH, json=chat("in-time", "on time"))
    assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"] == "on time"


async def test_slow_fake_stream_gap_past_timeout_is_504_before_any_event(client: httpx.AsyncClient) -> None:
    started = time.perf_counter()
    r = await client.post("/v1/chat/completions", headers=AUTH, json=chat("late-stream", "a b", stream=True))
    assert r.status_code == 504 and r.json()["error"]["code"] == "provider_timeout"
    assert "sent nothing for 0.1 s during a stream" in r.json()["error"]["message"]
    assert time.perf_counter() - started < 1.5


async def test_dispatch_log_names_the_fallback_it_tries_and_says_when_none_is_left(
    client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="gateway.dispatch"):
        r = await client.post("/v1/chat/completions", headers=AUTH, json=chat("flaky", "via demo"))
        assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"] == "via demo"
        lonely = await client.post("/v1/chat/completions", headers=AUTH, json=chat("lonely"))
        doomed = await client.post("/v1/chat/completions", headers=AUTH, json=chat("doomed"))
        assert lonely.status_code == doomed.status_code == 502
    messages = [re.sub(r" \(.*\)", "", r.getMessage()) for r in caplog.records if r.name == "gateway.dispatch"]
    assert messages == [
        "model flaky failed; trying fallback also-flaky",
        "model also-flaky failed; trying fallback demo",
        "model doomed failed; trying fallback also-flaky",
        "model also-flaky failed; no fallback left",
    ]  # a route of one deployment ("lonely") has no fallback to announce


@pytest.mark.parametrize(
    ("text", "content"), [("plain words", '{"echo":"plain words"}'), ('{"queue": "bugs"}', '{"queue": "bugs"}')]
)
async def test_echo_asked_for_a_json_object_answers_one(client: httpx.AsyncClient, text: str, content: str) -> None:
    body = chat("demo", text, response_format={"type": "json_object"})
    r = await client.post("/v1/chat/completions", headers=AUTH, json=body)
    assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"] == content
