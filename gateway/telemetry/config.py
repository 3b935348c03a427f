"""LogConfig: the `log:` section of the config file (the operator log's format, level and request lines)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

LogFormat = Literal["json", "text"]
LogLevel = Literal["debug", "info", "warning", "error"]


class LogConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    format: LogFormat = Field(default="json", description="One JSON object per line, or key=value text.")
    level: LogLevel = Field(default="info", description="Request lines are info: warning and above drops them.")
    requests: bool = Field(default=True, description="One line per HTTP request (health probes excepted).")
    failed_auth_per_minute: int = Field(
        default=60, ge=0, description="Lines for refused keys (401) per minute; the rest are counted, not written."
    )
