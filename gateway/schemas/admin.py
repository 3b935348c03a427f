"""Request and response models of the admin API (/admin/keys, /admin/teams, /admin/usage)."""

from __future__ import annotations

from collections.abc import Collection
from datetime import UTC, datetime

from pydantic import BaseModel, ConfigDict, Field, field_validator

from gateway.calls.caller import Period, Role


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Limits(_Body):
    budget: float | None = Field(default=None, ge=0, description="USD per period; null = no budget")
    period: Period | None = None
    rpm: int | None = Field(default=None, ge=1)
    tpm: int | None = Field(default=None, ge=1)
    models: list[str] | None = Field(default=None, description="allowed public model names; null = all")
    metadata: dict[str, object] | None = None


class TeamCreate(Limits):
    name: str = Field(min_length=1, max_length=200)
    period: Period = "monthly"
    metadata: dict[str, object] = Field(default_factory=dict)


class TeamUpdate(Limits):
    pass


class KeyCreate(Limits):
    name: str = Field(min_length=1, max_length=200)
    team: str | None = Field(default=None, description="team id or name")
    role: Role = "member"
    period: Period = "monthly"
    expires_at: datetime | None = None
    metadata: dict[str, object] = Field(default_factory=dict)

    @field_validator("expires_at")
    @classmethod
    def _future(cls, value: datetime | None) -> datetime | None:
        return future_expiry(value)


class KeyUpdate(Limits):
    name: str | None = Field(default=None, min_length=1, max_length=200)
    team: str | None = None
    role: Role | None = None
    expires_at: datetime | None = Field(default=None, description="null removes the expiry")

    @field_validator("expires_at")
    @classmethod
    def _future(cls, value: datetime | None) -> datetime | None:
        return future_expiry(value)


def future_expiry(value: datetime | None) -> datetime | None:
    """An expiry must name its timezone and lie ahead: a key that expires in the past would be dead on arrival."""
    if value is None:
        return None
    if value.tzinfo is None:
        raise ValueError("expires_at needs a timezone, e.g. 2026-12-31T00:00:00Z")
    if value <= datetime.now(UTC):
        raise ValueError(f"expires_at {value.isoformat()} is in the past; give a future time, or null for no expiry")
    return value


def unserved_models(models: list[str] | None, served: Collection[str]) -> list[str]:
    """Warnings for allowed-model names the gateway does not serve. They are accepted (a list may name a model to
    be configured later) but never silently: the admin API answers them in `warnings`, the CLI prints them."""
    return [
        f"models: {name!r} is not a model this gateway serves (see GET /v1/models); calls to it fail until it is "
        "configured"
        for name in models or ()
        if name not in served
    ]


class TeamOut(BaseModel):
    id: str
    name: str
    budget: float | None
    period: str
    rpm: int | None
    tpm: int | None
    models: list[str] | None
    metadata: dict[str, object]
    created_at: datetime
    warnings: list[str] = Field(default_factory=list, description="what was accepted but looks wrong")


class KeyOut(BaseModel):
    id: str
    name: str
    prefix: str
    team_id: str | None
    role: str
    models: list[str] | None
    budget: float | None
    period: str
    rpm: int | None
    tpm: int | None
    expires_at: datetime | None
    revoked_at: datetime | None
    metadata: dict[str, object]
    created_at: datetime
    key: str | None = Field(default=None, description="the secret; present only in create and rotate answers")
    warnings: list[str] = Field(default_factory=list, description="what was accepted but looks wrong")


class BudgetOut(BaseModel):
    scope: str
    budget: float | None
    period: str
    spent: float
    reserved: float
