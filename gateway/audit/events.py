"""AuditEvent: what one audit record says happened, and the canonical bytes its chain hash covers.

The fields serve the EU AI Act's record-keeping and human-oversight duties for high-risk systems:
- Art. 12(1)-(2): events relevant to identifying risks and to post-market monitoring: `action`, `outcome`,
  `rule_id`, `risk`, `reason`, with `policy_sha256` naming the exact policy version that decided.
- Art. 12(3)(a), the period of each use: `started_at` (when the use began, e.g. the request arrived) and
  `occurred_at` (when this event happened, its end for a call).
- Art. 12(3)(b)-(c), the reference data and the input checked against it: `policy_sha256` and `rule_id` (the
  reference), `input_sha256` (a digest of the input or tool arguments checked: provable, but no content and no
  secrets in the log), `model` (which model was used), `request_id` (joins the usage record of the call).
- Art. 12(3)(d) and Art. 14, human oversight: `actor`, `actor_role`, `actor_team` say who acted or decided (an
  approver approving, an admin revoking a key), `reason` says why (the approver's comment).
`details` holds the rest of the event as a JSON object. It must never hold secrets: values under keys that name
one (api_key, authorization, password, secret, token, ...) are replaced by "[redacted]" on construction.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Annotated, Self
from uuid import UUID, uuid4

import orjson
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, JsonValue, field_validator

from gateway.calls.caller import Principal

GENESIS_HASH = "0" * 64  # the prev_hash of the first record ever written
MASTER = "master"  # actor of the master key
SYSTEM = "system"  # actor of what the gateway does by itself (expiry, retention, policy reloads)
REDACTED = "[redacted]"
_SECRET_KEY = re.compile(r"api[_-]?key|authorization|password|passwd|secret|token$|credential|private[_-]?key", re.I)


def _as_utc(value: datetime) -> datetime:
    # Naive is taken as UTC (as the spool writes it); stored and hashed in UTC, so the hash reads back the same.
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


_UTC = Annotated[datetime, AfterValidator(_as_utc)]


def _now() -> datetime:
    return datetime.now(UTC)


class AuditEvent(BaseModel):
    """One thing that happened: an immutable value, spooled as one JSON line, chained as one audit_records row."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    event_id: UUID = Field(default_factory=uuid4, description="Unique; shipping the same event twice stores it once.")
    occurred_at: _UTC = Field(default_factory=_now, description="When it happened (UTC).")
    started_at: _UTC | None = Field(default=None, description="When the use it concerns began (Art. 12(3)(a)).")
    actor: str = Field(min_length=1, description='Who acted: a key id, "master" or "system".')
    actor_role: str | None = Field(default=None, description="The actor's role then: admin, approver, member...")
    actor_team: str | None = Field(default=None, description="The actor's team then, if any.")
    action: str = Field(
        pattern=r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$",
        description="What happened, dotted: policy.decision, approval.approved, key.revoked, audit.pruned...",
    )
    subject: str | None = Field(default=None, description="What it happened to: a key, approval or request id.")
    outcome: str | None = Field(default=None, description="What was decided: allow, deny, redact, approved...")
    reason: str | None = Field(default=None, description="Why: the rule's message or the approver's comment.")
    rule_id: str | None = Field(default=None, description="The policy rule that decided, if one did.")
    risk: str | None = Field(default=None, description="The risk level the rule assigns: low, medium, high...")
    policy_sha256: str | None = Field(default=None, description="The policy set's sha256 when it was decided.")
    request_id: str | None = Field(default=None, description="The call it belongs to (joins usage_records).")
    model: str | None = Field(default=None, description="The public model name involved, if any.")
    input_sha256: str | None = Field(default=None, description="sha256 of the input checked (no content stored).")
    details: dict[str, JsonValue] = Field(default_factory=dict, description="Anything else; never secrets.")

    @field_validator("details")
    @classmethod
    def _redact(cls, details: dict[str, JsonValue]) -> dict[str, JsonValue]:
        return _redacted(details)  # type: ignore[return-value]

    @classmethod
    def by(cls, principal: Principal | None, action: str, **fields: object) -> Self:
        """An event whose actor is `principal` (the master key as "master"; no principal as "system")."""
        if principal is None:
            actor, role, team = SYSTEM, SYSTEM, None
        else:
            actor, role, team = principal.key_id or MASTER, principal.role, principal.team_id
        return cls.model_validate({"actor": actor, "actor_role": role, "actor_team": team, "action": action, **fields})


HASHED_FIELDS = tuple(AuditEvent.model_fields)  # with seq: everything a record says, and nothing else


def event_row(event: AuditEvent) -> dict[str, object]:
    """The event as audit_records column values (seq, prev_hash and hash are added when it is chained)."""
    row = event.model_dump()
    row["event_id"] = str(event.event_id)
    return row


def canonical_json(fields: Mapping[str, object], seq: int) -> bytes:
    """The bytes a record's hash covers: its event fields and seq, keys sorted, timestamps in UTC.

    Null fields are left out, so a nullable field added to AuditEvent later leaves the bytes (and so the hashes)
    of the records stored before it unchanged. Any other change to these bytes breaks every stored chain.
    """
    values = {name: fields[name] for name in HASHED_FIELDS if fields[name] is not None}
    for name in ("occurred_at", "started_at"):
        value = values.get(name)
        if isinstance(value, datetime):
            values[name] = _as_utc(value)
    values["event_id"] = str(values["event_id"])
    values["seq"] = seq
    return orjson.dumps(values, option=orjson.OPT_SORT_KEYS)


def record_hash(prev_hash: str, fields: Mapping[str, object], seq: int) -> str:
    """sha256(prev_hash + canonical_json(fields, seq)), hex: the link from one record to the next."""
    return hashlib.sha256(prev_hash.encode("ascii") + canonical_json(fields, seq)).hexdigest()


def _redacted(value: object) -> object:
    if isinstance(value, dict):
        return {k: REDACTED if _SECRET_KEY.search(k) else _redacted(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_redacted(v) for v in value]
    return value
