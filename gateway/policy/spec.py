"""PolicyFile: the policy YAML as written (pydantic, extra="forbid", frozen), and its JSON Schema export.

One file holds one policy: what it applies to, its mode, its guardrails (and, with the agent-governance
stage, its tool rules). Several files compose into a policy set; see governance/loader.py.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from gateway.toolcalls.rules import ToolRules

Stage = Literal["input", "output"]
Action = Literal["allow", "warn", "redact", "block"]
Mode = Literal["enforce", "shadow"]
Route = Literal["chat", "completions", "embeddings"]
# Most restrictive wins: a higher rank overrides a lower one.
ACTION_RANK: dict[str, int] = {"allow": 0, "warn": 1, "redact": 2, "block": 3}
SCHEMA_PATH = Path(__file__).resolve().parents[2] / "policies" / "schema.json"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class AppliesTo(_Strict):
    """Which calls a policy governs; an absent list means "all". Globs (`*`, `?`) match model names."""

    keys: tuple[str, ...] | None = Field(default=None, description="key ids or visible prefixes")
    teams: tuple[str, ...] | None = Field(default=None, description="team ids or names")
    models: tuple[str, ...] | None = Field(default=None, description="public model names or globs")
    routes: tuple[Route, ...] | None = Field(default=None, description="chat, completions, embeddings")


class Guardrail(_Strict):
    """One check at one stage, and what to do when it finds something."""

    id: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.:-]+$", description="unique across the policy set")
    stage: Stage
    check: str = Field(min_length=1, description="a built-in check or a registered custom one")
    params: dict[str, object] = Field(default_factory=dict, description="the check's parameters")
    action: Action = "block"
    message: str | None = Field(default=None, description="shown to the caller when the guardrail blocks")


class PolicyFile(_Strict):
    """A policy file as written. Line 1 of a file may name the schema for editors."""

    version: Literal[1] = 1
    name: str = Field(min_length=1)
    description: str = ""
    mode: Mode = Field(default="enforce", description="shadow: log and report what would happen, change nothing")
    applies_to: AppliesTo = Field(default_factory=AppliesTo)
    guardrails: tuple[Guardrail, ...] = ()
    tools: ToolRules | None = Field(
        default=None, description="rules for the tool calls models ask for; absent: this policy governs none"
    )

    @field_validator("guardrails")
    @classmethod
    def _unique_ids(cls, guardrails: tuple[Guardrail, ...]) -> tuple[Guardrail, ...]:
        seen: set[str] = set()
        for guardrail in guardrails:
            if guardrail.id in seen:
                raise ValueError(f"duplicate guardrail id {guardrail.id!r}")
            seen.add(guardrail.id)
        return guardrails


def policy_schema() -> dict[str, object]:
    """The JSON Schema committed as policies/schema.json (a test keeps the two equal)."""
    schema = PolicyFile.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "Gateway policy file"
    return schema


def render_schema() -> str:
    return json.dumps(policy_schema(), indent=2, sort_keys=True) + "\n"


if __name__ == "__main__":  # python -m gateway.policy.spec: regenerate policies/schema.json
    SCHEMA_PATH.write_text(render_schema())
    print(f"wrote {SCHEMA_PATH}")
