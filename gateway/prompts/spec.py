"""PromptSpec: what one prompt version holds (pydantic, extra="forbid"), as the API takes it and YAML files hold it.

A prompt file in a `prompts/` folder (what `gateway prompts sync DIR` loads and `gateway prompts export` writes):

    id: support-triage
    description: Sorts a customer message into a queue.
    model: gpt-4o-mini                     # default model (a public name); the request's model overrides it
    params: {temperature: 0.2, max_tokens: 200}   # defaults for any request field the request leaves out
    messages:                              # Jinja2 templates (sandboxed); {{ name }} is a variable
      - {role: system, content: "You triage support mail for {{ product }}."}
      - {role: user, content: "Customer tier: {{ tier }}"}
    tools: [...]                           # optional, as in a chat request
    response_format: {type: json_object}   # optional
    commit_message: Shorter system prompt  # optional: what changed, shown in `versions`
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Literal

import orjson
import yaml
from pydantic import BaseModel, ConfigDict, Field, JsonValue, field_validator

PROMPT_ID = r"^[a-z0-9][a-z0-9._-]{0,63}$"
LABEL = r"^[a-z0-9][a-z0-9_-]{0,31}$"
LATEST = "latest"  # follows the newest version by itself; cannot be moved
SCHEMA_PATH = Path(__file__).resolve().parents[2] / "prompts" / "schema.json"
# Request fields a prompt may not default: they describe the call itself, not the prompt.
RESERVED_PARAMS = frozenset({"model", "messages", "prompt", "stream", "stream_options", "resume_approvals"})


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TemplateMessage(_Strict):
    role: Literal["system", "developer", "user", "assistant"]
    content: str = Field(min_length=1, description="A Jinja2 template; variables are {{ name }}.")


class PromptSpec(_Strict):
    """One version's content. Two specs with the same content_sha256 are the same version."""

    id: str = Field(pattern=PROMPT_ID, description="lower-case letters, digits, '.', '_' and '-'")
    description: str | None = None
    model: str | None = Field(default=None, min_length=1, description="default public model name")
    params: dict[str, JsonValue] = Field(default_factory=dict, description="defaults for request fields")
    messages: tuple[TemplateMessage, ...] = Field(min_length=1)
    tools: list[JsonValue] | None = None
    response_format: dict[str, JsonValue] | None = None
    commit_message: str | None = Field(default=None, max_length=2000, description="what changed; not content")

    @field_validator("params")
    @classmethod
    def _params(cls, params: dict[str, JsonValue]) -> dict[str, JsonValue]:
        reserved = sorted(RESERVED_PARAMS & params.keys())
        if reserved:
            raise ValueError(f"params may not set {', '.join(reserved)} (they belong to the request)")
        for name in ("tools", "response_format"):
            if name in params:
                raise ValueError(f"give {name} as its own field, not in params")
        return params

    def content(self) -> dict[str, object]:
        """Everything that makes the version what it is (not the commit message)."""
        return self.model_dump(mode="json", exclude={"commit_message"}, exclude_none=True)

    def content_sha256(self) -> str:
        return hashlib.sha256(orjson.dumps(self.content(), option=orjson.OPT_SORT_KEYS)).hexdigest()


def check_label(label: str) -> str:
    """Raises ValueError for a label that is not a movable label name."""
    if not re.fullmatch(LABEL, label):
        raise ValueError(f"invalid label {label!r}: lower-case letters, digits, '_' and '-', at most 32")
    if label == LATEST:
        raise ValueError("'latest' follows the newest version by itself and cannot be moved")
    return label


class _FileDumper(yaml.SafeDumper):
    """Multi-line text as `|` blocks, so files read like the ones people write and diffs show changed lines."""


def _text(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value and not any(line != line.rstrip() for line in value.splitlines()) else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_FileDumper.add_representer(str, _text)


def prompt_file(spec: PromptSpec) -> str:
    """The spec as a prompt file: what export writes, diff compares and sync reads back to the same content."""
    data = spec.model_dump(mode="json", exclude_none=True)
    if not data.get("params"):
        data.pop("params", None)
    return yaml.dump(data, Dumper=_FileDumper, sort_keys=False, allow_unicode=True, width=100)


def prompt_schema() -> dict[str, object]:
    """The JSON Schema committed as prompts/schema.json (a test keeps the two equal); editors read it from the
    first line of a prompt file: `# yaml-language-server: $schema=schema.json`."""
    schema = PromptSpec.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "Gateway prompt file"
    return schema


if __name__ == "__main__":  # python -m gateway.prompts.spec: regenerate prompts/schema.json
    SCHEMA_PATH.write_text(json.dumps(prompt_schema(), indent=2, sort_keys=True) + "\n")
    print(f"wrote {SCHEMA_PATH}")
