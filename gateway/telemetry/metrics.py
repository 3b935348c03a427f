"""Prometheus metrics of the model calls, with bounded label values, and their text exposition.

Label values come from fixed sets only, so a client cannot create series: `model` is a configured public
model name or "other", `status_code` one of STATUS_LABELS or "other", `code` the class code of one of the
gateway's upstream error classes, policy `stage`/`action` from POLICY_STAGES/POLICY_ACTIONS or "other".

Several worker processes: prometheus_client's multiprocess mode, chosen by prometheus_client itself when
PROMETHEUS_MULTIPROC_DIR is set before it is imported (`gateway serve --workers N` sets it, see
telemetry/multiprocess.py). Each process then writes its values to files there and a scrape of any worker
sums all of them.

Cost per call of `observe` (2 cores, Python 3.11, prometheus_client 0.26): 3.4 µs in one process, 8.2 µs in
multiprocess mode, where each increment is a write to the mmapped file (details in telemetry/hook.py).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram, ProcessCollector, generate_latest, values
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from prometheus_client.metrics_core import Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from gateway.calls.context import CallContext
from gateway.errors import UpstreamError, UpstreamInvalidRequest, UpstreamNotFound, UpstreamRateLimited

OTHER = "other"
STATUS_LABELS = {
    status: str(status) for status in (200, 400, 401, 403, 404, 405, 408, 409, 413, 422, 429, 499, 500, 502, 503, 504)
}
UPSTREAM_ERRORS = (UpstreamError, UpstreamRateLimited, UpstreamInvalidRequest, UpstreamNotFound)
# Later stages report here; a new stage or action is added to these sets, never passed through unchecked.
POLICY_STAGES = frozenset({"input", "output", "tool_args", "retrieval", "tool"})
_ACTIONS = ("allow", "warn", "redact", "block", "deny", "require_approval")  # guardrail and tool-policy actions
POLICY_ACTIONS = frozenset(_ACTIONS) | {f"shadow_{action}" for action in _ACTIONS}  # shadow: logged, not enforced
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
OVERHEAD_BUCKETS = (0.0001, 0.00025, 0.0005, 0.00075, 0.001, 0.0015, 0.002, 0.003, 0.005, 0.01, 0.025, 0.1)


def is_multiprocess() -> bool:
    """What prometheus_client decided when it was imported (it reads PROMETHEUS_MULTIPROC_DIR itself)."""
    return bool(getattr(values.ValueClass, "_multiprocess", False))


class GatewayMetrics:
    """The gateway's metrics for one process; `observe` is called once per finished call."""

    def __init__(self, model_names: Iterable[str]) -> None:
        self.multiprocess = is_multiprocess()
        # A registry of our own, never prometheus_client's global one: each app (and each test) starts at zero.
        self.registry = CollectorRegistry(auto_describe=False)
        registry = self.registry
        self._models = {name: name for name in model_names}
        self.requests = Counter(
            "gateway_requests",
            "Calls by requested model, operation, HTTP status and streaming.",
            ("model", "operation", "status_code", "stream"),
            registry=registry,
        )
        self.tokens = Counter(
            "gateway_tokens",
            "Tokens by the model that answered (after fallbacks); cached is the part of input read from cache.",
            ("model", "kind"),
            registry=registry,
        )
        self.cost = Counter(
            "gateway_cost_usd",
            "Cost in USD by the model that answered (after fallbacks).",
            ("model",),
            registry=registry,
        )
        self.duration = Histogram(
            "gateway_request_duration_seconds",
            "Call duration from arrival to the last byte of the answer (streams: to the end of the stream).",
            ("model", "operation"),
            buckets=DURATION_BUCKETS,
            registry=registry,
        )
        self.overhead = Histogram(
            "gateway_overhead_seconds",
            "Time spent in the gateway itself (call duration minus upstream wait), non-streamed calls.",
            buckets=OVERHEAD_BUCKETS,
            registry=registry,
        )
        self.upstream_errors = Counter(
            "gateway_upstream_errors",
            "Calls that failed upstream (after retries and fallbacks), by requested model and error code.",
            ("model", "code"),
            registry=registry,
        )
        self.policy_decisions = Counter(
            "gateway_policy_decisions",
            "Guardrail and policy decisions by stage and action.",
            ("stage", "action"),
            registry=registry,
        )
        if not self.multiprocess:  # per-process figures do not add up across workers, so only in one process
            ProcessCollector(registry=registry)
        # Children of the labelled metrics, by label values: `.labels()` costs more than the increment itself.
        self._calls: dict[tuple[str, str, str, bool], tuple[Counter, Histogram]] = {}
        self._usage: dict[str, tuple[Counter, Counter, Counter, Counter]] = {}

    def observe(self, ctx: CallContext, duration_s: float) -> None:
        """Counts one finished call (succeeded or failed): request, duration, overhead, tokens, cost, errors."""
        model = self._models.get(ctx.model, OTHER)
        status = STATUS_LABELS.get(ctx.status_code, OTHER)
        key = (model, ctx.operation, status, ctx.stream)
        call = self._calls.get(key)
        if call is None:
            call = self._calls[key] = (
                self.requests.labels(model, ctx.operation, status, "true" if ctx.stream else "false"),
                self.duration.labels(model, ctx.operation),
            )
        call[0].inc()
        call[1].observe(duration_s)
        if not ctx.stream:  # a stream's own time interleaves with its upstream's and is not separable here
            self.overhead.observe(max(duration_s - ctx.upstream_s, 0.0))
        usage = ctx.usage
        if usage is not None:
            answered = ctx.deployment.name if ctx.deployment is not None else ctx.model
            tokens_in, tokens_out, tokens_cached, cost = self._get_usage(self._models.get(answered, OTHER))
            if usage.prompt_tokens:
                tokens_in.inc(usage.prompt_tokens)
            if usage.completion_tokens:
                tokens_out.inc(usage.completion_tokens)
            if usage.cached_tokens:
                tokens_cached.inc(usage.cached_tokens)
            if ctx.cost_nanos:
                cost.inc(ctx.cost_nanos / 1e9)
        error = ctx.error
        if error is not None and isinstance(error, UPSTREAM_ERRORS):
            self.upstream_errors.labels(model, type(error).code).inc()  # the class's code, never a free string

    def _get_usage(self, model: str) -> tuple[Counter, Counter, Counter, Counter]:
        children = self._usage.get(model)
        if children is None:
            tokens = self.tokens
            children = self._usage[model] = (
                tokens.labels(model, "input"),
                tokens.labels(model, "output"),
                tokens.labels(model, "cached"),
                self.cost.labels(model),
            )
        return children

    def record_policy_decision(self, stage: str, action: str, *, shadow: bool = False) -> None:
        """Counts one guardrail or policy decision (a shadow one as action "shadow_<action>"); values outside
        POLICY_STAGES/POLICY_ACTIONS count as "other"."""
        if shadow:
            action = f"shadow_{action}"
        self.policy_decisions.labels(
            stage if stage in POLICY_STAGES else OTHER, action if action in POLICY_ACTIONS else OTHER
        ).inc()

    def render(self) -> tuple[bytes, str]:
        """The text exposition (format 0.0.4) and its content type; in multiprocess mode, summed over workers."""
        registry = self.registry
        if self.multiprocess:
            registry = CollectorRegistry(auto_describe=False)
            MultiProcessCollector(registry)
        return generate_latest(WithoutCreated(registry)), CONTENT_TYPE_PLAIN_0_0_4


class WithoutCreated(Collector):
    """Drops the `*_created` samples, which the 0.0.4 text format would turn into one extra gauge per series
    (multiprocess mode has none, so both modes expose the same series)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry

    def collect(self) -> Iterator[Metric]:
        for family in self.registry.collect():
            family.samples = [s for s in family.samples if not s.name.endswith("_created")]
            yield family
