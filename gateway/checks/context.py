"""Checks that need more than a text: max_tokens (the whole prompt), json_output (the request's
response_format), webhook (an HTTP service); and build_check, which names every check a policy can use.

A text check answers `scan(text)`; a context check answers `await scan_context(text, ctx)` and is given the
joined text of a stage once, with the call's context.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol, runtime_checkable

import aiohttp
import orjson

from gateway.calls.context import CallContext
from gateway.checks.base import Check, Finding
from gateway.checks.injection_classifier import InjectionClassifierCheck
from gateway.checks.registry import BUILTIN_CHECKS, load_entry_point_check


@runtime_checkable
class ContextCheck(Protocol):
    name: str

    async def scan_context(self, text: str, ctx: CallContext) -> list[Finding]: ...


class MaxTokensCheck:
    """Flags a request whose prompt exceeds `max` tokens (tiktoken's count, offline; `count` is the meter's)."""

    name = "max_tokens"

    def __init__(self, *, max: int, count: Callable[[CallContext], Awaitable[int]] | None = None) -> None:  # noqa: A002
        if not isinstance(max, int) or max < 1:
            raise ValueError("max must be a positive integer")
        self.max = max
        self.count = count

    async def scan_context(self, text: str, ctx: CallContext) -> list[Finding]:
        tokens = ctx.prompt_tokens
        if tokens is None and self.count is not None:
            tokens = ctx.prompt_tokens = await self.count(ctx)
        if tokens is not None and tokens > self.max:
            return [Finding("max_tokens", "max_tokens", 0, len(text), detail=f"{tokens} tokens > {self.max}")]
        return []


class JsonOutputCheck:
    """When the request asked for JSON (`response_format` json_object or json_schema), flags output that is
    not valid JSON, or (with json_schema and `validate_schema`, default true) does not match the schema."""

    name = "json_output"

    def __init__(self, *, validate_schema: bool = True) -> None:
        self.validate_schema = validate_schema

    async def scan_context(self, text: str, ctx: CallContext) -> list[Finding]:
        response_format = ctx.body.get("response_format")
        if not isinstance(response_format, dict) or response_format.get("type") not in ("json_object", "json_schema"):
            return []
        try:
            value = orjson.loads(text)
        except orjson.JSONDecodeError as exc:
            return [Finding("json_output", "invalid_json", 0, len(text), detail=f"not valid JSON: {exc}")]
        spec = response_format.get("json_schema")
        schema = spec.get("schema") if isinstance(spec, dict) else None
        if self.validate_schema and isinstance(schema, dict):
            import jsonschema

            errors = sorted(jsonschema.Draft202012Validator(schema).iter_errors(value), key=lambda e: list(e.path))
            if errors:
                where = "/".join(str(p) for p in errors[0].path) or "(root)"
                detail = f"does not match the schema at {where}: {errors[0].message}"
                return [Finding("json_output", "schema_mismatch", 0, len(text), detail=detail)]
        return []


class WebhookCheck:
    """Asks an HTTP service: POST {"text", "stage", "model", "key_id", "team_id"} to `url`; the answer is
    {"findings": [{"kind", "start", "end", "score"?, "detail"?}]} (empty: nothing found). A timeout, an error
    status or a malformed answer raises, and the guardrail fails closed."""

    name = "webhook"

    def __init__(self, *, url: str, timeout_s: float = 2.0, headers: dict[str, str] | None = None,
                 session: Callable[[], aiohttp.ClientSession] | None = None) -> None:  # fmt: skip
        if not url.startswith(("http://", "https://")):
            raise ValueError("url must be an http:// or https:// URL")
        self.url = url
        self.timeout = aiohttp.ClientTimeout(total=timeout_s)
        self.headers = headers or {}
        self.session = session

    async def scan_context(self, text: str, ctx: CallContext) -> list[Finding]:
        if self.session is None:
            raise RuntimeError("the webhook check has no HTTP client")
        principal = ctx.principal
        payload = {
            "text": text,
            "model": ctx.model,
            "key_id": principal.key_id if principal else None,
            "team_id": principal.team_id if principal else None,
        }
        try:
            async with self.session().post(self.url, json=payload, headers=self.headers, timeout=self.timeout) as r:
                if r.status >= 400:
                    raise RuntimeError(f"webhook {self.url} answered {r.status}")
                answer = await r.json(content_type=None)
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise RuntimeError(f"webhook {self.url} failed: {type(exc).__name__}") from exc
        findings = answer.get("findings") if isinstance(answer, dict) else None
        if not isinstance(findings, list):
            raise RuntimeError(f"webhook {self.url} answered without a findings list")
        return [
            Finding(
                "webhook",
                str(f.get("kind", "webhook")),
                int(f.get("start", 0)),
                int(f.get("end", len(text))),
                float(f.get("score", 1.0)),
                str(f.get("detail", "")),
            )
            for f in findings
            if isinstance(f, dict)
        ]


CONTEXT_CHECKS: dict[str, type] = {
    "max_tokens": MaxTokensCheck,
    "json_output": JsonOutputCheck,
    "webhook": WebhookCheck,
    "injection_classifier": InjectionClassifierCheck,
}


def check_names() -> list[str]:
    return sorted({*BUILTIN_CHECKS, *CONTEXT_CHECKS})


def build_check(name: str, params: dict[str, object], **services: object) -> Check | ContextCheck:
    """A check by its policy name, with its parameters; raises ValueError/TypeError/LookupError when wrong.

    `services` carries what context checks may need: `session` (webhook), `count` (max_tokens)."""
    if name in BUILTIN_CHECKS:
        return BUILTIN_CHECKS[name](**params)  # type: ignore[no-any-return]
    if name in CONTEXT_CHECKS:
        extra = {
            k: v for k, v in services.items() if k in {"webhook": ("session",), "max_tokens": ("count",)}.get(name, ())
        }
        return CONTEXT_CHECKS[name](**params, **extra)  # type: ignore[no-any-return]
    try:
        factory = load_entry_point_check(name)
    except LookupError:
        raise LookupError(f"unknown check; built-in checks are {', '.join(check_names())}") from None
    return factory(**params)  # type: ignore[no-any-return]
