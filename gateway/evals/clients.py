"""The runner's two ways to reach a gateway: in process (the app's services, full pipeline, no server) or over HTTP.

Both give the runner one `Observed` per call, embeddings for `similar` and a judge for `llm_judge`, and both call with
a key of the run's own: in process a dedicated virtual key named `eval-<run_id>` (created for the run, revoked at its
end), over HTTP the `--key` given, with the run id in the `x-gateway-eval-run` header. Usage records carry the run id.
Over HTTP the gateway's decisions (and the call's cost) come from `GET /admin/calls/{request_id}`, asked only when the
suite needs them (governance or cost assertions, a cost cap), which needs an admin key.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import orjson

from gateway.errors import GatewayError
from gateway.evals.answers import error_of, fill_from_body, join_stream
from gateway.evals.embeddings import Embeddings, vectors_of
from gateway.evals.observed import Observed
from gateway.providers.base import Reply

if TYPE_CHECKING:
    import httpx

    from gateway.config import GatewayConfig
    from gateway.evals.cassette import Cassette
    from gateway.services import Services

EVAL_RUN_HEADER = "x-gateway-eval-run"


class TargetUnreachable(Exception):
    """The gateway (or its admin API) cannot be reached at all: the run cannot finish (exit 3)."""


class CallFailed(GatewayError):
    """One call could not be made or read (a judge that failed, a record that never came): that attempt errors.
    A GatewayError, so assertions that call the judge or embed report it as their own error."""

    status_code = 502
    type = "upstream_error"
    code = "eval_call_failed"


class UnknownTarget(ValueError):
    """A suite's target names a model the gateway does not serve (exit 2, with the field)."""

    def __init__(self, index: int, message: str) -> None:
        super().__init__(message)
        self.field = f"targets[{index}]"
        self.message = message


class EvalClient(Protocol):
    scope: str  # what the response cache key is scoped to
    needs_record: bool  # fetch decisions and cost for each call (over HTTP)

    def run(self, run_id: str) -> Any: ...  # an async context manager around one run
    async def call(self, request: dict[str, Any]) -> Observed: ...
    async def embed(self, model: str, texts: list[str]) -> list[list[float]]: ...
    async def complete(self, model: str, messages: list[dict[str, Any]]) -> tuple[str, float]: ...
    async def check_targets(self, targets: list[Any]) -> None: ...
    async def store(self, result: dict[str, Any]) -> str: ...


class InProcessClient:
    """The app's services built from a config, driven without a server: what the router would do, minus HTTP."""

    def __init__(
        self, config: GatewayConfig | str | Path, *, cassette: Cassette | None = None, prompts: Sequence[Any] = ()
    ) -> None:
        if not hasattr(config, "models"):  # a config file's path
            from gateway.settings import Settings

            config = Settings(config=Path(config)).resolve()
        self.config: GatewayConfig = config  # type: ignore[assignment]
        self.cassette = cassette
        self.prompts = list(prompts)  # PromptSpecs to load as versions (if changed) before the run
        self.needs_record = False  # the context has the decisions anyway
        self.services: Services | None = None
        self.scope = ""
        self._stack = AsyncExitStack()
        self._authorization: str | None = None
        self._run_id: str | None = None
        self._embeddings = Embeddings(self._fetch_embeddings)

    async def __aenter__(self) -> InProcessClient:
        from gateway.services import build_services

        self.services = await self._stack.enter_async_context(build_services(self.config))
        if self.cassette is not None:
            self.cassette.install(self.services.registry)
        if self.prompts:
            await self._sync_prompts()
        models = orjson.dumps([m.model_dump(mode="json") for m in self.config.models], option=orjson.OPT_SORT_KEYS)
        policies = self.services.policies.current.sha256
        self.scope = "inprocess:" + hashlib.sha256(models + b"|" + policies.encode()).hexdigest()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._stack.aclose()

    async def _sync_prompts(self) -> None:
        """Each prompt file becomes a new version when its content changed (`gateway prompts sync`, without HTTP)."""
        from gateway.calls.caller import Principal

        services = self.services
        assert services is not None
        who = Principal(key_id=None, name="gateway eval --sync-prompts", role="admin")
        for spec in self.prompts:
            await services.prompts.create_version(spec, who, if_changed=True)
        await services.prompt_registry.changed()

    @asynccontextmanager
    async def run(self, run_id: str) -> AsyncIterator[None]:
        """A key of the run's own for its calls, revoked when the run ends (also when it fails)."""
        from gateway.audit.events import AuditEvent
        from gateway.schemas.admin import KeyCreate

        services = self.services
        assert services is not None, "use `async with InProcessClient(...)` first"
        spec = KeyCreate(name=f"eval-{run_id}", role="member", metadata={"eval_run_id": run_id})
        key, secret = await services.keys.create_key(spec)
        services.audit.record(AuditEvent.by(None, "key.created", subject=key.id, outcome="done",
                                            details={"prefix": key.prefix, "eval_run_id": run_id}))  # fmt: skip
        await services.key_cache.changed()
        self._authorization, self._run_id = f"Bearer {secret}", run_id
        try:
            yield
        finally:
            await services.keys.revoke_key(key.id)
            services.audit.record(AuditEvent.by(None, "key.revoked", subject=key.id, outcome="done",
                                                details={"eval_run_id": run_id}))  # fmt: skip
            await services.key_cache.changed()
            self._authorization = self._run_id = None

    async def call(self, request: dict[str, Any], operation: str = "chat") -> Observed:
        from gateway.calls.context import CallContext
        from gateway.middleware import new_request_id

        assert self.services is not None and self._authorization is not None, "call inside `async with client.run()`"
        started = time.perf_counter()
        ctx = CallContext(
            request_id=new_request_id(),
            operation=operation,  # type: ignore[arg-type]
            raw=orjson.dumps(request),
            authorization=self._authorization,
        )
        if hasattr(ctx, "eval_run_id"):  # the usage record's eval_run_id column (gateway/evals/store.py's migration)
            ctx.eval_run_id = self._run_id
        observed = Observed(request_id=ctx.request_id, status=200)
        try:
            result = await self.services.pipeline.run(ctx)
            if isinstance(result, Reply):
                fill_from_body(observed, result.data)
            else:
                body, error = join_stream([event async for event in result])
                fill_from_body(observed, body)
                if error is not None:  # the stream's last event: the status the headers could no longer carry
                    observed.status, observed.error = ctx.status_code, error
        except GatewayError as exc:
            observed.status, observed.error = exc.status_code, error_of(exc.body())
        except Exception as exc:  # noqa: BLE001 - what the router would answer as a 500, kept for the report
            observed.status = 500
            observed.error = {"message": f"{type(exc).__name__}: {exc}", "type": "server_error", "code": None,
                              "param": None}  # fmt: skip
        observed.latency_ms = (time.perf_counter() - started) * 1000.0
        if ctx.usage is not None:
            observed.prompt_tokens, observed.completion_tokens = ctx.usage.prompt_tokens, ctx.usage.completion_tokens
        observed.cost_usd = ctx.cost_nanos / 1e9
        observed.decisions = list(ctx.decisions or ())
        observed.headers = {"x-request-id": ctx.request_id, **(ctx.response_headers or {})}
        observed.model = ctx.deployment.name if ctx.deployment is not None else ctx.model
        observed.prompt_version = ctx.prompt_version
        return observed

    async def embed(self, model: str, texts: list[str]) -> list[list[float]]:
        return await self._embeddings.get(model, texts)

    async def _fetch_embeddings(self, model: str, texts: list[str]) -> list[list[float]]:
        observed = await self.call({"model": model, "input": texts}, operation="embeddings")
        if observed.status != 200 or observed.body is None:
            raise CallFailed(f"embedding model {model} answered {observed.status}: {message_of(observed)}")
        return vectors_of(observed.body)

    async def complete(self, model: str, messages: list[dict[str, Any]]) -> tuple[str, float]:
        observed = await self.call({"model": model, "messages": messages, "temperature": 0})
        if observed.status != 200:
            raise CallFailed(f"judge model {model} answered {observed.status}: {message_of(observed)}")
        return observed.text, observed.cost_usd

    async def check_targets(self, targets: list[Any]) -> None:
        """Each model target must be configured, and each prompt target's prompt, label or version must exist."""
        from gateway.errors import PromptNotFound

        assert self.services is not None
        served = {m.name for m in self.config.models}
        for index, target in enumerate(targets):
            if target.kind == "model" and target.model not in served:
                raise UnknownTarget(index, f"no model {target.model!r} in the config (it serves: "
                                           f"{', '.join(sorted(served))})")  # fmt: skip
            if target.kind == "prompt":
                try:
                    await self.services.prompt_registry.resolve(target.prompt_id, label=target.label,
                                                                version=target.version)  # fmt: skip
                except PromptNotFound as exc:
                    raise UnknownTarget(index, exc.message) from None

    async def store(self, result: dict[str, Any]) -> str:
        """Saves the run with the store's EvalRunStore, when this build has it."""
        try:
            from gateway.evals.store import EvalRunStore  # type: ignore[import-not-found]
        except ImportError:
            return "not stored: this build has no eval run store"
        assert self.services is not None
        await EvalRunStore(self.services.db).save(result)
        return f"stored as run {result['run_id']}"


def message_of(observed: Observed) -> str:
    return str((observed.error or {}).get("message") or "(no message)")


class HttpClient:
    """A running gateway's OpenAI-shaped API through one pooled httpx client (its pool sized to the concurrency)."""

    def __init__(
        self, url: str, key: str, admin_key: str | None = None, *, concurrency: int = 8,
        timeout_s: float = 300.0, transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:  # fmt: skip
        self.url = url.rstrip("/")
        self.key = key
        self.admin_key = admin_key
        self.needs_record = False
        self.scope = "url:" + self.url
        self._concurrency = concurrency
        self._timeout_s = timeout_s
        self._transport = transport
        self._http: httpx.AsyncClient | None = None
        self._run_id = ""
        self._embeddings = Embeddings(self._fetch_embeddings)

    async def __aenter__(self) -> HttpClient:
        import httpx

        limits = httpx.Limits(max_connections=self._concurrency + 2, max_keepalive_connections=self._concurrency + 2)
        self._http = httpx.AsyncClient(
            base_url=self.url, limits=limits, timeout=httpx.Timeout(self._timeout_s, connect=10.0),
            transport=self._transport, trust_env=False,
        )  # fmt: skip
        if self.admin_key is not None:  # cached answers then miss when the gateway's policy set changes
            response = await self._send("GET", "/admin/policies", headers=self._headers(self.admin_key))
            if response.status_code == 200:
                self.scope = f"url:{self.url}|policies:{response.json().get('sha256')}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._http is not None:
            await self._http.aclose()

    @asynccontextmanager
    async def run(self, run_id: str) -> AsyncIterator[None]:
        self._run_id = run_id
        yield

    def _headers(self, key: str | None = None) -> dict[str, str]:
        return {"authorization": f"Bearer {key or self.key}", EVAL_RUN_HEADER: self._run_id}

    async def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        import httpx

        assert self._http is not None, "use `async with HttpClient(...)` first"
        try:
            return await self._http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise TargetUnreachable(f"cannot reach the gateway at {self.url}: {exc or type(exc).__name__}") from None

    async def call(self, request: dict[str, Any], path: str = "/v1/chat/completions") -> Observed:
        import httpx

        assert self._http is not None, "use `async with HttpClient(...)` first"
        started = time.perf_counter()
        try:
            if request.get("stream"):
                async with self._http.stream("POST", path, json=request, headers=self._headers()) as response:
                    raw = [chunk async for chunk in response.aiter_bytes()] if response.status_code == 200 else []
                    if response.status_code != 200:
                        await response.aread()
            else:
                response = await self._http.post(path, json=request, headers=self._headers())
        except httpx.TransportError as exc:
            raise TargetUnreachable(f"cannot reach the gateway at {self.url}: {exc or type(exc).__name__}") from None
        observed = Observed(request_id=response.headers.get("x-request-id", ""), status=response.status_code)
        observed.latency_ms = (time.perf_counter() - started) * 1000.0
        observed.headers = {name.lower(): value for name, value in response.headers.items()}
        if response.status_code != 200:
            observed.error = error_of(json_or_text(response.content))
        elif request.get("stream"):
            body, error = join_stream([b"".join(raw)])
            fill_from_body(observed, body)
            if error is not None:  # sent after a 200 header: the error object says what happened
                observed.error = error
        else:
            body = json_or_text(response.content)
            if isinstance(body, dict):
                fill_from_body(observed, body)
        if self.needs_record and observed.request_id:
            await self._read_record(observed)
        return observed

    async def _read_record(self, observed: Observed) -> None:
        """What the gateway decided for the call, and what it cost, from its usage record."""
        path = f"/admin/calls/{observed.request_id}"
        response = await self._send("GET", path, params={"wait_ms": 2000}, headers=self._headers(self.admin_key))
        if response.status_code != 200:
            raise CallFailed(f"GET {path} answered {response.status_code}: {response.text[:300]}")
        record = response.json()
        observed.decisions = list(record.get("decisions") or ())
        observed.cost_usd = float(record.get("cost_usd") or 0.0)
        observed.prompt_version = record.get("prompt_version")
        observed.model = observed.model or str(record.get("model") or "")

    async def embed(self, model: str, texts: list[str]) -> list[list[float]]:
        return await self._embeddings.get(model, texts)

    async def _fetch_embeddings(self, model: str, texts: list[str]) -> list[list[float]]:
        response = await self._send("POST", "/v1/embeddings", json={"model": model, "input": texts},
                                    headers=self._headers())  # fmt: skip
        if response.status_code != 200:
            raise CallFailed(f"embedding model {model} answered {response.status_code}: {response.text[:300]}")
        return vectors_of(response.json())

    async def complete(self, model: str, messages: list[dict[str, Any]]) -> tuple[str, float]:
        saved, self.needs_record = self.needs_record, self.admin_key is not None  # the judge's cost, when readable
        try:
            observed = await self.call({"model": model, "messages": messages, "temperature": 0})
        finally:
            self.needs_record = saved
        if observed.status != 200:
            raise CallFailed(f"judge model {model} answered {observed.status}: {message_of(observed)}")
        return observed.text, observed.cost_usd

    async def check_targets(self, targets: list[Any]) -> None:
        """The gateway must serve each model target to the run's key (GET /v1/models); unreachable: exit 3. Prompt
        targets are checked by their first call (the key may not read the prompt registry)."""
        response = await self._send("GET", "/v1/models", headers=self._headers())
        if response.status_code == 401:
            raise UnknownTarget(-1, f"the gateway at {self.url} refused the key: {response.text[:300]}")
        if response.status_code != 200:
            raise TargetUnreachable(f"GET {self.url}/v1/models answered {response.status_code}")
        served = {str(m.get("id")) for m in response.json().get("data") or ()}
        for index, target in enumerate(targets):
            if target.kind == "model" and target.model not in served:
                raise UnknownTarget(index, f"the gateway at {self.url} serves no model {target.model!r} to this key")

    async def store(self, result: dict[str, Any]) -> str:
        if self.admin_key is None:
            return "not stored: storing a run over HTTP needs --admin-key"
        response = await self._send("POST", "/admin/evals/runs", json=result, headers=self._headers(self.admin_key))
        if response.status_code >= 300:
            return f"not stored: POST /admin/evals/runs answered {response.status_code}: {response.text[:300]}"
        return f"stored as run {result['run_id']}"


def json_or_text(raw: bytes) -> Any:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return raw.decode("utf-8", "replace")
