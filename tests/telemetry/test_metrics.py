"""Prometheus metrics through the app: counts, tokens, cost, histograms, bounded labels, auth and config."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI
from prometheus_client.parser import text_string_to_metric_families

from gateway.app import create_app
from gateway.config import ConfigError
from gateway.telemetry.hook import TelemetryHook
from tests.conftest import AUTH, MakeConfig, chat
from tests.fake_upstream import FakeUpstream, Reply

PRICED_MODELS: list[dict[str, object]] = [
    {"name": "demo", "model": "fake/echo", "price": {"input_per_mtok": 1000, "output_per_mtok": 2000}},
    {"name": "broken", "model": "fake/error:503", "max_retries": 0},
]
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> Samples:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


async def scrape(client: httpx.AsyncClient, path: str = "/metrics", **kwargs: object) -> Samples:
    r = await client.get(path, **kwargs)  # type: ignore[arg-type]
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain; version=0.0.4")
    return parse(r.text)


@pytest.fixture
def priced_app(make_config: MakeConfig) -> FastAPI:
    return create_app(make_config(models=PRICED_MODELS))


@pytest.fixture
async def priced(priced_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with priced_app.router.lifespan_context(priced_app):
        transport = httpx.ASGITransport(app=priced_app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as c:
            yield c


async def test_metrics_count_calls_tokens_cost_and_durations(priced: httpx.AsyncClient) -> None:
    prompt_tokens = completion_tokens = 0
    for text in ("one", "two words", "three more words"):
        r = await priced.post("/v1/chat/completions", headers=AUTH, json=chat("demo", text))
        assert r.status_code == 200
        prompt_tokens += r.json()["usage"]["prompt_tokens"]
        completion_tokens += r.json()["usage"]["completion_tokens"]
    r = await priced.post("/v1/chat/completions", headers=AUTH, json=chat("demo", "a stream", stream=True))
    assert r.status_code == 200 and r.text.endswith("data: [DONE]\n\n")

    samples = await scrape(priced)
    calls = {"model": "demo", "operation": "chat", "status_code": "200"}
    assert value(samples, "gateway_requests_total", **calls, stream="false") == 3
    assert value(samples, "gateway_requests_total", **calls, stream="true") == 1
    # The stream's usage: "a stream" is 2 words, prompt 2 + 3 per message (the fake provider's rule).
    assert value(samples, "gateway_tokens_total", model="demo", kind="input") == prompt_tokens + 5
    assert value(samples, "gateway_tokens_total", model="demo", kind="output") == completion_tokens + 2
    cost = ((prompt_tokens + 5) * 1000 + (completion_tokens + 2) * 2000) / 1e6
    assert value(samples, "gateway_cost_usd_total", model="demo") == pytest.approx(cost)

    duration = {"model": "demo", "operation": "chat"}
    assert value(samples, "gateway_request_duration_seconds_count", **duration) == 4
    assert value(samples, "gateway_request_duration_seconds_bucket", **duration, le="+Inf") == 4
    assert value(samples, "gateway_request_duration_seconds_bucket", **duration, le="300.0") == 4
    assert 0 < value(samples, "gateway_request_duration_seconds_sum", **duration) < 5  # type: ignore[operator]
    assert value(samples, "gateway_overhead_seconds_count") == 3  # streams are not in the overhead histogram
    assert value(samples, "gateway_overhead_seconds_bucket", le="0.1") == 3  # in-process fake: far under 100 ms


async def test_unknown_models_and_anonymous_calls_count_as_other(priced: httpx.AsyncClient) -> None:
    r = await priced.post("/v1/chat/completions", headers=AUTH, json=chat("no-such-model-7f3c"))
    assert r.status_code == 404
    r = await priced.post("/v1/embeddings", json={"model": "another-made-up-name", "input": "x"})
    assert r.status_code == 401

    r = await priced.get("/metrics")
    assert "no-such-model-7f3c" not in r.text and "another-made-up-name" not in r.text
    samples = parse(r.text)
    assert value(samples, "gateway_requests_total", model="other", operation="chat", status_code="404", stream="false")
    assert value(
        samples, "gateway_requests_total", model="other", operation="embeddings", status_code="401", stream="false"
    )
    models = {dict(labels).get("model") for _, labels in samples} - {None}
    assert models == {"other"}


async def test_upstream_failures_count_by_model_and_error_class_code(priced: httpx.AsyncClient) -> None:
    for _ in range(2):
        r = await priced.post("/v1/chat/completions", headers=AUTH, json=chat("broken"))
        assert r.status_code == 502
    samples = await scrape(priced)
    assert value(samples, "gateway_upstream_errors_total", model="broken", code="provider_error") == 2
    assert (
        value(samples, "gateway_requests_total", model="broken", operation="chat", status_code="502", stream="false")
        == 2
    )
    assert value(samples, "gateway_tokens_total", model="broken", kind="input") is None  # nothing was billed


async def test_stream_broken_midway_counts_once_as_its_error(client: httpx.AsyncClient, upstream: FakeUpstream) -> None:
    events = [{"choices": [{"index": 0, "delta": {"content": w}}]} for w in "abcd"]
    upstream.script(Reply(stream_events=events, close_after_events=2))
    r = await client.post("/v1/chat/completions", headers=AUTH, json=chat("gpt-test", stream=True))
    assert r.status_code == 200 and '"provider_error"' in r.text  # the error is the stream's last event
    samples = await scrape(client)
    assert [v for (name, _), v in samples.items() if name == "gateway_requests_total"] == [1]  # one series, once
    assert value(
        samples, "gateway_requests_total", model="gpt-test", operation="chat", status_code="502", stream="true"
    )
    assert value(samples, "gateway_upstream_errors_total", model="gpt-test", code="provider_error") == 1


async def test_policy_decisions_are_counted_with_bounded_labels(priced: httpx.AsyncClient, priced_app: FastAPI) -> None:
    telemetry = priced_app.state.services.telemetry
    telemetry.record_policy_decision("input", "deny")
    telemetry.record_policy_decision("input", "deny")
    telemetry.record_policy_decision("tool", "require_approval")
    telemetry.record_policy_decision("output", "block", shadow=True)
    telemetry.record_policy_decision("made-up stage", "made-up action")
    samples = await scrape(priced)
    assert value(samples, "gateway_policy_decisions_total", stage="input", action="deny") == 2
    assert value(samples, "gateway_policy_decisions_total", stage="tool", action="require_approval") == 1
    assert value(samples, "gateway_policy_decisions_total", stage="output", action="shadow_block") == 1
    assert value(samples, "gateway_policy_decisions_total", stage="other", action="other") == 1


async def test_metrics_key_required_when_configured(make_config: MakeConfig) -> None:
    config = make_config(telemetry={"metrics": {"require_key": True, "path": "/internal/metrics"}})
    app = create_app(config)
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gateway") as c:
            assert (await c.get("/internal/metrics")).status_code == 401
            assert (await c.get("/metrics")).status_code == 404  # only the configured path serves them
            member = await c.post("/admin/keys", headers=AUTH, json={"name": "m", "role": "member"})
            viewer = await c.post("/admin/keys", headers=AUTH, json={"name": "v", "role": "viewer"})
            r = await c.get("/internal/metrics", headers={"authorization": f"Bearer {member.json()['key']}"})
            assert r.status_code == 403 and r.json()["error"]["code"] == "insufficient_role"
            await scrape(c, "/internal/metrics", headers={"authorization": f"Bearer {viewer.json()['key']}"})
            await scrape(c, "/internal/metrics", headers=AUTH)


async def test_metrics_disabled_serves_nothing_and_adds_no_stage(make_config: MakeConfig) -> None:
    app = create_app(make_config(telemetry={"metrics": {"enabled": False}}))
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gateway") as c:
            assert (await c.get("/metrics")).status_code == 404
            assert (await c.post("/v1/chat/completions", headers=AUTH, json=chat("demo"))).status_code == 200
        services = app.state.services
        assert services.telemetry.metrics is None
        assert not any(isinstance(hook, TelemetryHook) for hook in services.pipeline.hooks)
        services.telemetry.record_policy_decision("input", "deny")  # a no-op, not an error


def test_telemetry_config_rejects_unknown_keys_and_bad_values(make_config: MakeConfig) -> None:
    with pytest.raises(ConfigError, match=r"telemetry\.tracing\.exporter"):
        make_config(telemetry={"tracing": {"exporter": "jaeger"}})
    with pytest.raises(ConfigError, match=r"telemetry\.tracing\.sample_ratio"):
        make_config(telemetry={"tracing": {"sample_ratio": 2}})
    with pytest.raises(ConfigError, match=r"telemetry\.metrics\.path"):
        make_config(telemetry={"metrics": {"path": "metrics"}})
