"""PromptsConfig: the `prompts:` section of the config file."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from gateway.evals.config import GateConfig


class PromptsConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    protected_labels: tuple[str, ...] = Field(
        default=("production",), description="Labels only an admin may move (members move the others)."
    )
    gates: dict[str, GateConfig] = Field(
        default_factory=dict,
        description="Label -> the eval suite a version must pass (a stored run, same suite sha256) before the label "
        "may point at it: `production: {suite: evals/triage.yaml, min_pass_rate: 1.0}`.",
    )
