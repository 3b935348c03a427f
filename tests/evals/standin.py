"""A stand-in for the assertion union, used only while gateway.evals.assertions has no AssertionSpec (the assertions
are written on another branch): the few shapes these tests write, validated the way the real union validates them."""

from __future__ import annotations

from typing import Annotated, Literal

import pytest
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from gateway.evals import spec


class _Base(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    weight: float = Field(default=1.0, gt=0)
    metric: str | None = None


class Text(_Base):
    type: Literal["equals", "contains", "icontains", "starts-with", "regex", "not-contains", "not-icontains",
                  "not-equals", "not-regex", "not-starts-with"]  # fmt: skip
    value: str


class Many(_Base):
    type: Literal["contains-any", "contains-all", "icontains-any", "icontains-all", "not-contains-any",
                  "not-icontains-any", "not-contains-all", "not-icontains-all"]  # fmt: skip
    value: list[str]


class Bare(_Base):
    type: Literal["is-json", "not-is-json", "allowed"]


class JsonSchema(_Base):
    type: Literal["json-schema", "not-json-schema"]
    value: dict[str, object]


class Limit(_Base):
    type: Literal["latency", "cost", "levenshtein", "not-latency", "not-cost", "not-levenshtein"]
    threshold: float = Field(ge=0)
    value: str | None = None


class Scored(_Base):
    type: Literal["similar", "not-similar"]
    value: str
    threshold: float = Field(default=0.8, ge=0, le=1)


class Judge(_Base):
    type: Literal["llm_judge"]
    rubric: str
    model: str | None = None
    threshold: float = Field(default=0.5, ge=0, le=1)


class Governance(_Base):
    type: Literal["blocked", "warned", "requires_approval", "not-blocked"]
    rule: str | None = None


class FinishReason(_Base):
    type: Literal["finish-reason", "not-finish-reason"]
    value: str


AssertionSpec = Annotated[Text | Many | Bare | JsonSchema | Limit | Scored | Judge | Governance | FinishReason,
                          Field(discriminator="type")]  # fmt: skip


PARSE = TypeAdapter(AssertionSpec).validate_python


@pytest.fixture(autouse=True)
def assertion_union(monkeypatch: pytest.MonkeyPatch) -> None:
    """Uses the real union when it exists on this branch, the stand-in otherwise."""
    try:
        from gateway.evals.assertions import AssertionSpec as _Real  # type: ignore[attr-defined]  # noqa: F401
    except ImportError:
        monkeypatch.setattr(spec, "assertion_parser", lambda: PARSE)
