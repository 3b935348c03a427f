"""GateConfig: a promotion gate as the config file names it (the suite and the pass rate a move needs); shared by
the `prompts:` section's label gates now and model aliases later."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator


class GateConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    suite: str = Field(
        description="The eval suite file a version must pass before the label may point at it (relative paths are "
        "from the gateway's working directory, like `policies`)."
    )
    min_pass_rate: float = Field(
        default=1.0, ge=0, le=1, description="The share of (case, target) units of that run that must pass."
    )

    @field_validator("suite")
    @classmethod
    def _suite_exists(cls, value: str) -> str:
        if not Path(value).is_file():
            raise ValueError(f"no suite file {value!r} (relative to the working directory {Path.cwd()})")
        return value
