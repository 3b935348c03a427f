"""Settings (pydantic-settings, GATEWAY_ prefix): the process settings that override the config file's."""

from __future__ import annotations

from pathlib import Path

from pydantic import SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from gateway.config import GatewayConfig, load_config, parse_config
from gateway.settings.environ import DEFAULT_URL, environment
from gateway.telemetry.config import LogFormat, LogLevel

DEFAULT_CONFIG_FILE = Path("gateway.yaml")


class Settings(BaseSettings):
    """Process-level settings; scalar ones override the config file's."""

    model_config = SettingsConfigDict(env_prefix="GATEWAY_", extra="ignore")

    config: Path | None = None
    master_key: SecretStr | None = None
    database_url: str | None = None
    redis_url: str | None = None
    policies: str | None = None
    max_request_bytes: int | None = None
    log_level: LogLevel | None = None
    log_format: LogFormat | None = None
    log_requests: bool | None = None  # GATEWAY_LOG_REQUESTS=false turns the request log off
    url: str = DEFAULT_URL  # where the CLI's admin commands find a running gateway
    spool_dir: str | None = None

    @field_validator("log_level", "log_format", mode="before")
    @classmethod
    def _lower(cls, value: object) -> object:
        return value.lower() if isinstance(value, str) else value

    def resolve(self) -> GatewayConfig:
        """The effective GatewayConfig: the file (if any), then GATEWAY_* overrides."""
        env = environment()
        path = self.config or (DEFAULT_CONFIG_FILE if DEFAULT_CONFIG_FILE.exists() else None)
        base = load_config(path, env=env) if path else parse_config({}, source="(no config file)", env=env)
        overrides = {
            name: getattr(self, name)
            for name in ("master_key", "database_url", "redis_url", "policies", "max_request_bytes", "spool_dir")
            if getattr(self, name) is not None
        }
        log = {
            field: value
            for field, value in (
                ("level", self.log_level),
                ("format", self.log_format),
                ("requests", self.log_requests),
            )
            if value is not None
        }
        if log:
            overrides["log"] = base.log.model_copy(update=log)
        return base.model_copy(update=overrides) if overrides else base
