"""Hostile prompt templates through the app: every render is bounded (steps, time, size), a costly one runs off the
event loop, and the rendered request must fit in max_request_bytes; each refusal is a 400 naming prompt and limit."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from gateway.config import GatewayConfig
from gateway.prompts.sandbox import MAX_RENDER_S, MAX_STEPS
from tests.conftest import AUTH, MakeConfig, chat
from tests.fake_upstream import FakeUpstream

# The reviewer's template wrote n * n x's; this one writes n, so the output stays under max_request_bytes.
NESTED = "{% for i in range(n) %}{% for j in range(n) %}{% if i == j %}x{% endif %}{% endfor %}{% endfor %}"
# Each call doubles the work and writes nothing: only the time bound stops it.
DOUBLING = "{% macro f(k) %}{% if k %}{{ f(k - 1) }}{{ f(k - 1) }}{% endif %}{% endmacro %}{{ f(n) }}"
REPEAT = "{{ 'x' * n }}"


@pytest.fixture
def config(make_config: MakeConfig) -> GatewayConfig:
    return make_config(max_request_bytes=8192)


async def create(client: httpx.AsyncClient, prompt_id: str, template: str) -> httpx.Response:
    body = {"id": prompt_id, "model": "gpt-test", "messages": [{"role": "system", "content": template}]}
    return await client.post("/admin/prompts", headers=AUTH, json=body)


def by_prompt(prompt_id: str, **variables: object) -> dict[str, object]:
    return {**chat("gpt-test", "hi"), "prompt": {"id": prompt_id, "variables": variables}}


def assert_limit_error(r: httpx.Response, prompt_id: str, limit: str) -> None:
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["type"] == "invalid_request_error" and error["code"] == "prompt_render_limit"
    assert error["param"] == "prompt"
    assert f"Prompt {prompt_id!r}" in error["message"] and limit in error["message"]


async def test_nested_loops_over_a_callers_range_stop_at_the_step_limit(
    client: httpx.AsyncClient, upstream: FakeUpstream
) -> None:
    assert (await create(client, "nested", NESTED)).status_code == 201
    ok = await client.post("/v1/chat/completions", headers=AUTH, json=by_prompt("nested", n=20))
    assert ok.status_code == 200, ok.text
    assert upstream.last.body is not None and upstream.last.body["messages"][0]["content"] == "x" * 20
    upstream.reset()
    started = time.perf_counter()
    r = await client.post("/v1/chat/completions", headers=AUTH, json=by_prompt("nested", n=5000))
    assert time.perf_counter() - started < 2  # was 6.1 s with the event loop blocked
    assert_limit_error(r, "nested", f"more than {MAX_STEPS} loop iterations and calls")
    assert upstream.requests == []


async def test_healthz_answers_while_a_hostile_render_runs(client: httpx.AsyncClient, upstream: FakeUpstream) -> None:
    assert (await create(client, "doubling", DOUBLING)).status_code == 201
    call = asyncio.create_task(client.post("/v1/chat/completions", headers=AUTH, json=by_prompt("doubling", n=40)))
    await asyncio.sleep(0.03)  # the render is under way
    started = time.perf_counter()
    health = await client.get("/healthz")
    waited = time.perf_counter() - started
    assert health.status_code == 200
    assert not call.done(), "the hostile render should still be running"
    assert waited < 0.1, f"/healthz waited {waited * 1000:.0f} ms behind a render"
    assert_limit_error(await call, "doubling", f"rendering took longer than {MAX_RENDER_S} s")
    assert upstream.requests == []


@pytest.mark.parametrize(
    ("n", "limit"),
    [
        (10_000, "the output passed the limit of 8192 characters"),
        (8150, "over this gateway's limit of 8192 bytes (max_request_bytes)"),  # the output fits, the body not
    ],
)
async def test_a_render_past_max_request_bytes_is_a_400(
    client: httpx.AsyncClient, upstream: FakeUpstream, n: int, limit: str
) -> None:
    assert (await create(client, "big", REPEAT)).status_code == 201
    r = await client.post("/v1/chat/completions", headers=AUTH, json=by_prompt("big", n=n))
    assert_limit_error(r, "big", limit)
    assert upstream.requests == []


async def test_a_template_looping_over_huge_literal_ranges_is_refused_at_creation(client: httpx.AsyncClient) -> None:
    started = time.perf_counter()
    r = await create(client, "huge", "{% for i in range(5000) %}{% for j in range(5000) %}x{% endfor %}{% endfor %}")
    assert time.perf_counter() - started < 2
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["param"] == "messages"
    assert "'huge'" in error["message"] and f"more than {MAX_STEPS} loop iterations" in error["message"]
    assert (await client.get("/admin/prompts/huge", headers=AUTH)).status_code == 404
