"""AuditConfig: the `audit:` section of the config file."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class AuditConfig(BaseModel):
    """Whether audit events are recorded, and how long the audit log keeps them."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = Field(
        default=True,
        description="Record audit events. When false nothing new is recorded; stored records are still pruned.",
    )
    retention_days: int = Field(
        default=365,
        ge=1,
        description=(
            "Records older than this are pruned (a prefix of the chain; verify still passes). The EU AI Act asks "
            "providers and deployers of high-risk systems to keep logs at least six months (Art. 19, 26(6)): "
            "keep this at 183 or more for such systems."
        ),
    )
