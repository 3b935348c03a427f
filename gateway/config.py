"""The gateway's YAML config file: pydantic models (extra="forbid"), ${ENV} interpolation, readable errors."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from gateway.approvals.config import ApprovalsConfig
from gateway.audit.config import AuditConfig
from gateway.prompts.config import PromptsConfig
from gateway.providers.endpoints import check_headers, parse_origin
from gateway.telemetry.config import LogConfig

# Models of provider `local`, served in process by providers/local.py: name -> dimensions.
LOCAL_MODELS: dict[str, int] = {"all-MiniLM-L6-v2": 384}

# Providers whose API is OpenAI's: they take the direct path (body forwarded nearly verbatim).
DIRECT_PROVIDERS: dict[str, str | None] = {
    "openai": "https://api.openai.com/v1",
    "hosted_vllm": None,
    "lm_studio": None,
    "openai_compatible": None,
    "groq": "https://api.groq.com/openai/v1",
    "together_ai": "https://api.together.xyz/v1",
    "deepseek": "https://api.deepseek.com/v1",
    "fireworks_ai": "https://api.fireworks.ai/inference/v1",
    "openrouter": "https://openrouter.ai/api/v1",
    "xai": "https://api.x.ai/v1",
}

_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-(.*?))?\}")


class ConfigError(Exception):
    """A config file that cannot be used; the message names the file, the field path and what was expected."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Price(_Strict):
    input_per_mtok: float = Field(ge=0)
    output_per_mtok: float = Field(ge=0)
    cached_input_per_mtok: float | None = Field(default=None, ge=0)


class ModelConfig(_Strict):
    name: str = Field(min_length=1, description="The public name clients send as `model`.")
    model: str = Field(description='litellm-style "provider/model", e.g. openai/gpt-4o-mini or fake/echo.')
    api_base: str | None = None
    api_key: SecretStr | None = None
    fallbacks: tuple[str, ...] = ()
    timeout_s: float = Field(default=60.0, gt=0)
    max_retries: int = Field(default=2, ge=0, le=10)
    price: Price | None = None
    headers: dict[str, str] = Field(default_factory=dict)
    path: Literal["auto", "direct", "litellm"] = "auto"

    @field_validator("model")
    @classmethod
    def _has_provider(cls, value: str) -> str:
        provider, sep, rest = value.partition("/")
        if not sep or not provider or not rest:
            raise ValueError('expected "provider/model", e.g. "openai/gpt-4o-mini" or "fake/echo"')
        return value

    @field_validator("headers")
    @classmethod
    def _sendable_headers(cls, value: dict[str, str]) -> dict[str, str]:
        check_headers(value)
        return value

    @property
    def provider(self) -> str:
        return self.model.partition("/")[0]

    @property
    def upstream_model(self) -> str:
        return self.model.partition("/")[2]

    @property
    def is_direct(self) -> bool:
        if self.path != "auto":
            return self.path == "direct"
        return self.provider in DIRECT_PROVIDERS

    @model_validator(mode="after")
    def _direct_needs_base(self) -> ModelConfig:
        if self.provider == "local" and self.upstream_model not in LOCAL_MODELS:
            raise ValueError(f"unknown local model {self.upstream_model!r}; available: {', '.join(LOCAL_MODELS)}")
        if self.provider != "fake" and self.is_direct and not (self.api_base or DIRECT_PROVIDERS.get(self.provider)):
            raise ValueError(f"api_base is required for provider {self.provider!r} (no default base URL)")
        if self.provider != "fake" and self.is_direct:
            parse_origin(self.base_url)  # the direct path connects to it: a bad URL stops startup, not a call
        if self.api_key is not None:  # sent as a header: a stray newline from a secrets file stops startup too
            try:
                check_headers({"authorization": f"Bearer {self.api_key.get_secret_value()}"})
            except ValueError as exc:
                raise ValueError(f"api_key cannot be sent as written: {exc}") from None
        return self

    @property
    def base_url(self) -> str:
        base = self.api_base or DIRECT_PROVIDERS.get(self.provider) or ""
        return base.rstrip("/")


class TracingConfig(_Strict):
    enabled: bool = Field(default=False, description="One OpenTelemetry span per call (GenAI semantic conventions).")
    otlp_endpoint: str | None = Field(
        default=None, description="OTLP/HTTP collector, e.g. http://collector:4318 (/v1/traces is added if absent)."
    )
    service_name: str = Field(default="gateway", min_length=1)
    sample_ratio: float = Field(default=1.0, ge=0, le=1, description="Share of calls traced (by trace id).")


class MetricsConfig(_Strict):
    enabled: bool = True
    path: str = Field(default="/metrics", pattern=r"^/[A-Za-z0-9_./-]*$", description="Where Prometheus scrapes.")
    require_key: bool = Field(default=False, description="Scrapes need an admin or viewer key.")


class TelemetryConfig(_Strict):
    tracing: TracingConfig = Field(default_factory=TracingConfig)
    metrics: MetricsConfig = Field(default_factory=MetricsConfig)


class ServerConfig(_Strict):
    """What `gateway serve` allows one client connection (per worker process): the defences against slow and
    oversized requests. Each refusal is answered when an answer can still be sent, and logged with the peer."""

    header_timeout_s: float = Field(
        default=10.0,
        gt=0,
        description="A request's head (request line and headers) must arrive within this, counted from its first "
        "byte (from the connection's opening for its first request); else 408, or a plain close if nothing came.",
    )
    body_timeout_s: float = Field(
        default=30.0, gt=0, description="The longest wait for the next bytes of a request body; else 408."
    )
    max_header_bytes: int = Field(
        default=64 * 1024, ge=1024, description="Largest request head (request line and headers); larger gets 431."
    )
    max_connections: int = Field(
        default=4096,
        ge=1,
        description="Open client connections per worker process; one more is answered 503 and closed at once.",
    )


class GatewayConfig(_Strict):
    models: tuple[ModelConfig, ...] = ()
    master_key: SecretStr | None = None
    database_url: str = "sqlite:///gateway.db"
    redis_url: str | None = None
    policies: str | None = None
    # 4 MiB by default: a body's JSON parse and each guardrail's regex search over a text are single C calls that
    # hold the GIL (orjson, re), so they stall the event loop even when scans run in a worker thread (policy/
    # guardrails.py), in proportion to the text. /healthz during one call, served, default policy, shared 2 cores:
    # 15.6 MB chat 0.72 s (2.75 s with the scans on the loop), 4 MB 0.11 s.
    max_request_bytes: int = Field(default=4 * 1024 * 1024, gt=0)
    retry_backoff_s: float = Field(default=0.25, ge=0, description="First retry delay; doubles per attempt.")
    spool_dir: str = Field(default="spool", description="Where usage records wait to be shipped to the database.")
    cache_poll_s: float = Field(
        default=0.5,
        gt=0,
        le=3600,
        description="How often each instance polls the database for key, kill-switch and prompt-label changes; "
        "with Redis a change also arrives at once by pub/sub, and the poll is only the safety net.",
    )
    server: ServerConfig = Field(default_factory=ServerConfig)
    telemetry: TelemetryConfig = Field(default_factory=TelemetryConfig)
    log: LogConfig = Field(default_factory=LogConfig)
    audit: AuditConfig = Field(default_factory=AuditConfig)
    approvals: ApprovalsConfig = Field(default_factory=ApprovalsConfig)
    prompts: PromptsConfig = Field(default_factory=PromptsConfig)

    @model_validator(mode="after")
    def _references(self) -> GatewayConfig:
        names = [m.name for m in self.models]
        seen: set[str] = set()
        for i, name in enumerate(names):
            if name in seen:
                raise ValueError(f"models[{i}].name: duplicate model name {name!r}")
            seen.add(name)
        for i, m in enumerate(self.models):
            for j, fallback in enumerate(m.fallbacks):
                if fallback not in seen:
                    raise ValueError(f"models[{i}].fallbacks[{j}]: unknown model {fallback!r}")
                if fallback == m.name:
                    raise ValueError(f"models[{i}].fallbacks[{j}]: a model cannot fall back to itself")
        return self

    def get_model(self, name: str) -> ModelConfig | None:
        return next((m for m in self.models if m.name == name), None)


def interpolate(value: object, env: Mapping[str, str], where: str = "") -> object:
    """Replace ${VAR} and ${VAR:-default} in every string of a parsed YAML document."""
    if isinstance(value, str):

        def substitute(match: re.Match[str]) -> str:
            name, default = match.group(1), match.group(2)
            if name in env:
                return env[name]
            if default is not None:
                return default
            raise ConfigError(f"{where or '(root)'}: environment variable {name} is not set")

        return _ENV_REF.sub(substitute, value)
    if isinstance(value, dict):
        return {k: interpolate(v, env, f"{where}.{k}" if where else str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env, f"{where}[{i}]") for i, v in enumerate(value)]
    return value


def format_validation_error(source: str, error: ValidationError) -> str:
    lines = []
    for item in error.errors():
        path = ""
        for part in item["loc"]:
            path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
        message = item["msg"].removeprefix("Value error, ")
        lines.append(f"{source}: {path}: {message}" if path else f"{source}: {message}")
    return "\n".join(lines)


def parse_config(data: object, *, source: str, env: Mapping[str, str]) -> GatewayConfig:
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: (root): expected a mapping of settings, got {type(data).__name__}")
    try:
        resolved = interpolate(data, env)
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc}") from None
    try:
        return GatewayConfig.model_validate(resolved)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(source, exc)) from None


def load_config(path: str | Path, *, env: Mapping[str, str]) -> GatewayConfig:
    """Read and validate a config file; raises ConfigError naming the file, field path and expectation."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the config file ({exc.strerror})") from None
    return parse_config(parse_yaml(text, str(path)), source=str(path), env=env)


def parse_yaml(text: str, source: str, error: type[ConfigError] = ConfigError) -> object:
    """YAML text to data; a syntax error raises `error` naming the source, line and column."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        raise error(f"{source}: {where}invalid YAML ({getattr(exc, 'problem', exc)})") from None
