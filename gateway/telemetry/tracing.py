"""OpenTelemetry tracing: the app's TracerProvider, and one GenAI client span per finished call.

Spans follow the GenAI semantic conventions (https://opentelemetry.io/docs/specs/semconv/gen-ai/gen-ai-spans/):
name "{gen_ai.operation.name} {gen_ai.request.model}", kind CLIENT, gen_ai.* request, response and usage
attributes, error.type on failure, plus gateway.* attributes. They never carry prompt or completion content.
The span is created when the call ends, back-dated to the call's start, so a call costs one span creation.

Only imported when tracing is enabled: with tracing off (the default) the OpenTelemetry SDK is never loaded
and no tracer or span exists. Cost per call of `record` (2 cores, Python 3.11, opentelemetry-sdk 1.45): 14 µs
to create the span (half of it the SDK's attribute checks), 24 µs with a BatchSpanProcessor, about 50 µs of CPU
with the OTLP/HTTP exporter (protobuf encoding and the POST, on the processor's thread); 5 µs when the span
is not sampled. Details in telemetry/hook.py.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable
from urllib.parse import urlsplit

import orjson
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased
from opentelemetry.trace import SpanKind, Status, StatusCode

from gateway import __version__
from gateway.calls.context import CallContext
from gateway.config import TracingConfig
from gateway.providers.base import Reply

log = logging.getLogger("gateway.telemetry")
OPERATION_NAMES = {"chat": "chat", "completions": "text_completion", "embeddings": "embeddings"}
MAX_MODEL_CHARS = 128  # an unknown model name is the client's string: keep it short in the span


def traces_url(endpoint: str) -> str:
    """An OTLP/HTTP base URL gets the traces path; a URL that already has a path is used as given."""
    return endpoint.rstrip("/") + "/v1/traces" if urlsplit(endpoint).path in ("", "/") else endpoint


class Tracing:
    """Owns the TracerProvider (never installed as the global one) and turns finished calls into spans."""

    def __init__(self, config: TracingConfig, model_names: Iterable[str]) -> None:
        self.provider = TracerProvider(
            sampler=ParentBased(TraceIdRatioBased(config.sample_ratio)),
            resource=Resource.create({"service.name": config.service_name, "service.version": __version__}),
            shutdown_on_exit=False,  # the app's lifespan shuts it down; no atexit hook
        )
        if config.otlp_endpoint:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            self.provider.add_span_processor(
                BatchSpanProcessor(OTLPSpanExporter(endpoint=traces_url(config.otlp_endpoint)))
            )
        else:
            log.warning("telemetry.tracing is enabled without otlp_endpoint: spans are created but not exported")
        self.tracer = self.provider.get_tracer("gateway", __version__)
        self._models = frozenset(model_names)

    def record(self, ctx: CallContext, reply: Reply | None, duration_s: float) -> None:
        """One CLIENT span for a finished call, from its start (ctx.started) to now."""
        end_ns = time.time_ns()
        operation = OPERATION_NAMES.get(ctx.operation, ctx.operation)
        model = ctx.model
        # Span names stay low-cardinality: a model that is not configured is not part of the name.
        name = f"{operation} {model}" if model in self._models else operation
        span = self.tracer.start_span(
            name,
            kind=SpanKind.CLIENT,
            attributes=span_attributes(ctx, reply, operation, duration_s),
            start_time=end_ns - int(duration_s * 1e9),
        )
        if ctx.error is not None:
            span.set_status(Status(StatusCode.ERROR, ctx.error.code))
        span.end(end_time=end_ns)

    async def close(self) -> None:
        """Flushes queued spans and stops the exporter (it may wait on the network, so off the event loop)."""
        await asyncio.to_thread(self.provider.shutdown)


def span_attributes(
    ctx: CallContext, reply: Reply | None, operation: str, duration_s: float
) -> dict[str, str | int | float | bool]:
    attributes: dict[str, str | int | float | bool] = {
        "gen_ai.operation.name": operation,
        "gateway.request_id": ctx.request_id,
        "gateway.attempts": ctx.attempts,
        "gateway.stream": ctx.stream,
    }
    if ctx.model:
        attributes["gen_ai.request.model"] = ctx.model[:MAX_MODEL_CHARS]
    deployment = ctx.deployment or (ctx.route[0].config if ctx.route else None)
    if deployment is not None:
        attributes["gen_ai.provider.name"] = deployment.provider
    body = ctx.body
    max_tokens = body.get("max_completion_tokens", body.get("max_tokens"))
    if type(max_tokens) is int:
        attributes["gen_ai.request.max_tokens"] = max_tokens
    temperature = body.get("temperature")
    if type(temperature) in (int, float):
        attributes["gen_ai.request.temperature"] = float(temperature)  # type: ignore[arg-type]
    response = reply.data if reply is not None else first_stream_event(ctx)
    if response is not None:
        if isinstance(response.get("model"), str):
            attributes["gen_ai.response.model"] = response["model"]  # type: ignore[assignment]
        if isinstance(response.get("id"), str):
            attributes["gen_ai.response.id"] = response["id"]  # type: ignore[assignment]
    usage = ctx.usage
    if usage is not None:
        attributes["gen_ai.usage.input_tokens"] = usage.prompt_tokens
        attributes["gen_ai.usage.output_tokens"] = usage.completion_tokens
        attributes["gateway.cost_usd"] = ctx.cost_nanos / 1e9
    principal = ctx.principal
    if principal is not None:
        if principal.key_id is not None:
            attributes["gateway.key_id"] = principal.key_id
        if principal.team_id is not None:
            attributes["gateway.team_id"] = principal.team_id
    if not ctx.stream:  # see metrics.py: a stream's own time is not separable from its upstream's
        attributes["gateway.overhead_ms"] = round((duration_s - ctx.upstream_s) * 1000.0, 3)
    if ctx.error is not None:
        attributes["error.type"] = ctx.error.code
    return attributes


def first_stream_event(ctx: CallContext) -> dict[str, object] | None:
    """The first chunk of a stream (kept by the meter stage), for the response's model and id."""
    if not ctx.stream_events:
        return None
    try:
        data = orjson.loads(ctx.stream_events[0][6:])  # b"data: {...}\n\n"
    except orjson.JSONDecodeError:
        return None
    return data if isinstance(data, dict) else None
