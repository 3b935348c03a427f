"""PromptsConfig: the `prompts:` section of the config file."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class PromptsConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    protected_labels: tuple[str, ...] = Field(
        default=("production",), description="Labels only an admin may move (members move the others)."
    )
