"""OpenTelemetry spans through the app: GenAI attributes, failures, streams, sampling, OTLP export, tracing off."""

from __future__ import annotations

import threading
import time
from collections.abc import AsyncIterator, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from gateway.app import create_app
from gateway.telemetry.hook import TelemetryHook
from gateway.telemetry.tracing import traces_url
from tests.conftest import AUTH, MakeConfig, chat
from tests.fake_upstream import FakeUpstream

TRACING_ON = {"tracing": {"enabled": True}}


@pytest.fixture
def spans() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
async def traced(make_config: MakeConfig, spans: InMemorySpanExporter) -> AsyncIterator[httpx.AsyncClient]:
    """A client of an app with tracing on; its spans land in `spans` (no OTLP endpoint configured)."""
    app = create_app(make_config(telemetry=TRACING_ON))
    async with app.router.lifespan_context(app):
        app.state.services.telemetry.tracing.provider.add_span_processor(SimpleSpanProcessor(spans))
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gateway") as c:
            yield c


def only_span(spans: InMemorySpanExporter) -> ReadableSpan:
    finished = spans.get_finished_spans()
    assert len(finished) == 1, [s.name for s in finished]
    return finished[0]


async def test_chat_span_follows_genai_conventions(
    traced: httpx.AsyncClient, spans: InMemorySpanExporter, upstream: FakeUpstream
) -> None:
    before = time.time_ns()
    body = chat("gpt-test", "secret prompt words", max_tokens=50, temperature=0.2)
    r = await traced.post("/v1/chat/completions", headers=AUTH, json=body)
    after = time.time_ns()
    assert r.status_code == 200
    usage = r.json()["usage"]

    span = only_span(spans)
    assert span.name == "chat gpt-test" and span.kind is SpanKind.CLIENT
    assert span.status.status_code is StatusCode.UNSET
    assert span.start_time is not None and span.end_time is not None
    assert before <= span.start_time < span.end_time <= after  # back-dated to the call's start, wall clock
    attributes = dict(span.attributes or {})
    overhead = attributes.pop("gateway.overhead_ms")
    cost = attributes.pop("gateway.cost_usd")
    assert isinstance(overhead, float) and 0 <= overhead < (span.end_time - span.start_time) / 1e6
    assert isinstance(cost, float) and cost > 0  # gpt-4o-mini has a price in litellm's map
    assert attributes == {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "openai",
        "gen_ai.request.model": "gpt-test",
        "gen_ai.request.max_tokens": 50,
        "gen_ai.request.temperature": 0.2,
        "gen_ai.response.model": "gpt-4o-mini",
        "gen_ai.response.id": r.json()["id"],
        "gen_ai.usage.input_tokens": usage["prompt_tokens"],
        "gen_ai.usage.output_tokens": usage["completion_tokens"],
        "gateway.request_id": r.headers["x-request-id"],
        "gateway.attempts": 1,
        "gateway.stream": False,
    }
    assert not any("secret" in str(v) for v in span.attributes.values())  # type: ignore[union-attr]


async def test_failed_call_span_has_error_type_and_attempts(
    traced: httpx.AsyncClient, spans: InMemorySpanExporter, upstream: FakeUpstream
) -> None:
    upstream.fail_next(503, times=3)  # gpt-test: 1 attempt + 2 retries
    r = await traced.post("/v1/chat/completions", headers=AUTH, json=chat("gpt-test"))
    assert r.status_code == 502

    span = only_span(spans)
    assert span.name == "chat gpt-test"
    assert span.status.status_code is StatusCode.ERROR and span.status.description == "provider_error"
    attributes = span.attributes or {}
    assert attributes["error.type"] == "provider_error"
    assert attributes["gateway.attempts"] == 3
    assert attributes["gen_ai.provider.name"] == "openai"
    assert "gen_ai.usage.input_tokens" not in attributes and "gen_ai.response.model" not in attributes


async def test_unknown_model_stays_out_of_the_span_name(traced: httpx.AsyncClient, spans: InMemorySpanExporter) -> None:
    r = await traced.post("/v1/chat/completions", headers=AUTH, json=chat("nope-7f3c"))
    assert r.status_code == 404
    span = only_span(spans)
    assert span.name == "chat"
    attributes = span.attributes or {}
    assert attributes["error.type"] == "model_not_found"
    assert attributes["gen_ai.request.model"] == "nope-7f3c"
    assert "gen_ai.provider.name" not in attributes


async def test_stream_span_carries_response_model_and_usage(
    traced: httpx.AsyncClient, spans: InMemorySpanExporter, upstream: FakeUpstream
) -> None:
    r = await traced.post("/v1/chat/completions", headers=AUTH, json=chat("gpt-test", "one two three", stream=True))
    assert r.status_code == 200 and r.text.endswith("data: [DONE]\n\n")
    attributes = only_span(spans).attributes or {}
    assert attributes["gateway.stream"] is True
    assert attributes["gen_ai.response.model"] == "gpt-4o-mini"
    assert attributes["gen_ai.usage.output_tokens"] > 0  # type: ignore[operator]
    assert "gateway.overhead_ms" not in attributes


@pytest.mark.parametrize(
    ("path", "payload", "name"),
    [
        ("/v1/completions", {"model": "demo", "prompt": "hi"}, "text_completion demo"),
        ("/v1/embeddings", {"model": "demo", "input": "hi"}, "embeddings demo"),
    ],
)
async def test_operation_names(
    traced: httpx.AsyncClient, spans: InMemorySpanExporter, path: str, payload: dict[str, object], name: str
) -> None:
    assert (await traced.post(path, headers=AUTH, json=payload)).status_code == 200
    span = only_span(spans)
    assert span.name == name
    assert (span.attributes or {})["gen_ai.provider.name"] == "fake"


async def test_tracing_off_by_default_creates_no_tracer(client: httpx.AsyncClient, app) -> None:  # type: ignore[no-untyped-def]
    assert (await client.post("/v1/chat/completions", headers=AUTH, json=chat("demo"))).status_code == 200
    telemetry = app.state.services.telemetry
    assert telemetry.tracing is None
    (hook,) = [h for h in app.state.services.pipeline.hooks if isinstance(h, TelemetryHook)]
    assert hook.tracing is None and hook.metrics is not None


async def test_sample_ratio_zero_records_no_span(make_config: MakeConfig, spans: InMemorySpanExporter) -> None:
    app = create_app(make_config(telemetry={"tracing": {"enabled": True, "sample_ratio": 0}}))
    async with app.router.lifespan_context(app):
        app.state.services.telemetry.tracing.provider.add_span_processor(SimpleSpanProcessor(spans))
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gateway") as c:
            assert (await c.post("/v1/chat/completions", headers=AUTH, json=chat("demo"))).status_code == 200
    assert spans.get_finished_spans() == ()


class Collector(BaseHTTPRequestHandler):
    """A stand-in OTLP/HTTP collector: keeps each POST's path, content type and body."""

    received: list[tuple[str, str, bytes]]

    def do_POST(self) -> None:  # noqa: N802 - the name http.server dispatches to
        body = self.rfile.read(int(self.headers["content-length"]))
        self.server.received.append((self.path, self.headers["content-type"], body))  # type: ignore[attr-defined]
        self.send_response(200)
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def collector() -> Iterator[ThreadingHTTPServer]:
    with ThreadingHTTPServer(("127.0.0.1", 0), Collector) as server:
        server.received = []  # type: ignore[attr-defined]
        thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
        thread.start()
        yield server
        server.shutdown()
        thread.join()


async def test_otlp_endpoint_exports_batched_spans_on_shutdown(
    make_config: MakeConfig, collector: ThreadingHTTPServer
) -> None:
    endpoint = f"http://127.0.0.1:{collector.server_address[1]}"
    tracing = {"enabled": True, "otlp_endpoint": endpoint, "service_name": "gw-test"}
    app = create_app(make_config(telemetry={"tracing": tracing}))
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gateway") as c:
            for _ in range(3):
                assert (await c.post("/v1/chat/completions", headers=AUTH, json=chat("demo"))).status_code == 200
    # The lifespan's exit shut the provider down, which flushed the BatchSpanProcessor.
    received = collector.received  # type: ignore[attr-defined]
    assert received and {(path, kind) for path, kind, _ in received} == {("/v1/traces", "application/x-protobuf")}
    names, services = [], set()
    for _, _, body in received:
        export = ExportTraceServiceRequest.FromString(body)
        for resource_spans in export.resource_spans:
            services |= {a.value.string_value for a in resource_spans.resource.attributes if a.key == "service.name"}
            names += [span.name for scope in resource_spans.scope_spans for span in scope.spans]
    assert names == ["chat demo"] * 3 and services == {"gw-test"}


@pytest.mark.parametrize(
    ("endpoint", "url"),
    [
        ("http://collector:4318", "http://collector:4318/v1/traces"),
        ("http://collector:4318/", "http://collector:4318/v1/traces"),
        ("https://otel.example.com/v1/traces", "https://otel.example.com/v1/traces"),
        ("https://otel.example.com/custom/path", "https://otel.example.com/custom/path"),
    ],
)
def test_traces_url(endpoint: str, url: str) -> None:
    assert traces_url(endpoint) == url
