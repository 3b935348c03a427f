"""ApprovalsConfig: the `approvals:` section of the config file (webhooks, expiry sweep)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr

WebhookEvent = Literal[
    "approval.created",
    "approval.approved",
    "approval.denied",
    "approval.expired",
    "approval.cancelled",
    "approval.executed",
]
CREATED_AND_DECIDED: tuple[WebhookEvent, ...] = (
    "approval.created",
    "approval.approved",
    "approval.denied",
    "approval.expired",
    "approval.cancelled",
)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class WebhookConfig(_Strict):
    """One receiver (a chat bot, a pager) told about approvals, each delivery signed with HMAC-SHA256."""

    url: str = Field(pattern=r"^https?://", description="Where events are POSTed as JSON.")
    secret: SecretStr = Field(description="Signs each delivery: header x-gateway-signature: t=<unix>,v1=<hex>.")
    events: tuple[WebhookEvent, ...] = Field(
        default=CREATED_AND_DECIDED, min_length=1, description="Which events to send (default: created and decided)."
    )
    timeout_s: float = Field(default=5.0, gt=0, le=60)
    max_attempts: int = Field(default=5, ge=1, le=20, description="Tries per event, with exponential backoff.")


class ApprovalsConfig(_Strict):
    webhooks: tuple[WebhookConfig, ...] = ()
    sweep_interval_s: float = Field(
        default=1.0, gt=0, le=60, description="How often expired approvals are closed (and announced)."
    )
