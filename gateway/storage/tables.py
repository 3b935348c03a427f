"""SQLModel table classes, nothing else."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    DateTime,
    Index,
    Integer,
    Text,
    TypeDecorator,
    UniqueConstraint,
    text,
)
from sqlalchemy.engine import Dialect
from sqlmodel import Field, SQLModel


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp stored in UTC and always read back timezone-aware, on SQLite as on Postgres.

    SQLite keeps no offset, so without this a row would come back naive there and aware on Postgres.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"Timestamp {value.isoformat()} has no timezone; pass datetime.now(UTC).")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


# BIGINT outlives 2**31 rows; SQLite needs INTEGER for its primary key to autoincrement.
BigIntegerKey = BigInteger().with_variant(Integer(), "sqlite")


def _now() -> datetime:
    return datetime.now(UTC)


class UsageRecord(SQLModel, table=True):
    """One model call through the gateway: who, which model, tokens, cost and timings."""

    __tablename__ = "usage_records"
    # Partial: calls outside eval runs (nearly all) write no index entry, so the hot path's inserts stay as cheap.
    __table_args__ = (
        Index(
            "ix_usage_records_eval_run_id",
            "eval_run_id",
            sqlite_where=text("eval_run_id IS NOT NULL"),
            postgresql_where=text("eval_run_id IS NOT NULL"),
        ),
    )

    id: int | None = Field(default=None, primary_key=True, sa_type=BigIntegerKey)
    request_id: str = Field(unique=True, index=True)
    key_id: str | None = Field(default=None, index=True)
    team_id: str | None = Field(default=None, index=True)
    model: str  # the public name the client sent (not indexed: no query filters on it, migration 0008)
    upstream_model: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    cost_usd: float = 0.0  # a float copy for reading by hand; sums use cost_nanos
    cost_nanos: int = Field(default=0, sa_type=BigInteger, sa_column_kwargs={"server_default": "0"})  # USD x 1e9
    latency_ms: float
    overhead_ms: float  # time the gateway itself added on top of the upstream call
    status_code: int
    stream: bool
    error_code: str | None = None
    policy_sha256: str | None = None  # the policy set that made the decisions below
    decisions: list[dict[str, object]] | None = Field(default=None, sa_type=JSON)  # guardrail and policy decisions
    prompt_id: str | None = None  # the registry prompt that produced the call, if any (not indexed either)
    prompt_version: int | None = None
    eval_run_id: str | None = None  # the eval run that made the call (x-gateway-eval-run); partial index below
    created_at: datetime = Field(default_factory=_now, index=True, sa_type=UTCDateTime)


class Team(SQLModel, table=True):
    """A group of keys sharing a budget, rate limits and allowed models."""

    __tablename__ = "teams"

    id: str = Field(primary_key=True)
    name: str = Field(unique=True, index=True)
    budget_nanos: int | None = Field(default=None, sa_type=BigInteger)  # USD x 1e9; None = no budget
    budget_period: str = "monthly"
    rpm: int | None = None
    tpm: int | None = None
    allowed_models: list[str] | None = Field(default=None, sa_type=JSON)  # None = every model
    metadata_: dict[str, object] = Field(default_factory=dict, sa_column=Column("metadata", JSON, nullable=False))
    created_at: datetime = Field(default_factory=_now, sa_type=UTCDateTime)
    updated_at: datetime = Field(default_factory=_now, index=True, sa_type=UTCDateTime)


class ApiKey(SQLModel, table=True):
    """A virtual key: stored as its sha256 only; the prefix identifies it in lists and logs."""

    __tablename__ = "api_keys"

    id: str = Field(primary_key=True)
    name: str
    key_hash: str = Field(unique=True, index=True)
    prefix: str
    team_id: str | None = Field(default=None, foreign_key="teams.id", index=True)
    role: str = "member"
    allowed_models: list[str] | None = Field(default=None, sa_type=JSON)
    budget_nanos: int | None = Field(default=None, sa_type=BigInteger)
    budget_period: str = "monthly"
    rpm: int | None = None
    tpm: int | None = None
    expires_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    revoked_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    metadata_: dict[str, object] = Field(default_factory=dict, sa_column=Column("metadata", JSON, nullable=False))
    created_at: datetime = Field(default_factory=_now, sa_type=UTCDateTime)
    updated_at: datetime = Field(default_factory=_now, index=True, sa_type=UTCDateTime)


class KeyPrefix(SQLModel, table=True):
    """Every visible prefix a key has had (its current one included): rotation adds one, nothing removes any, and
    no two keys ever share one. Policies that name a key by a prefix keep applying to it after rotation."""

    __tablename__ = "key_prefixes"

    prefix: str = Field(primary_key=True)
    key_id: str = Field(foreign_key="api_keys.id", index=True)
    created_at: datetime = Field(default_factory=_now, sa_type=UTCDateTime)


class AuditRecord(SQLModel, table=True):
    """One audit event, chained: `hash` = sha256(prev_hash + canonical JSON of the event and seq).

    The event fields are documented on gateway.audit.events.AuditEvent; gateway/audit/chain.py writes and checks.
    """

    __tablename__ = "audit_records"

    seq: int = Field(primary_key=True, sa_type=BigIntegerKey, sa_column_kwargs={"autoincrement": False})
    event_id: str = Field(unique=True, index=True)
    occurred_at: datetime = Field(index=True, sa_type=UTCDateTime)
    started_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    actor: str = Field(index=True)
    actor_role: str | None = None
    actor_team: str | None = None
    action: str = Field(index=True)
    subject: str | None = Field(default=None, index=True)
    outcome: str | None = None
    reason: str | None = None
    rule_id: str | None = None
    risk: str | None = None
    policy_sha256: str | None = None
    request_id: str | None = Field(default=None, index=True)
    model: str | None = None
    input_sha256: str | None = None
    details: dict[str, object] = Field(default_factory=dict, sa_type=JSON)
    prev_hash: str
    hash: str


class AuditCheckpoint(SQLModel, table=True):
    """Where pruning cut the audit chain: the seq and hash of the last record deleted, so verify starts there."""

    __tablename__ = "audit_checkpoints"

    id: int | None = Field(default=None, primary_key=True, sa_type=BigIntegerKey)
    seq: int = Field(unique=True, sa_type=BigInteger)
    hash: str
    pruned: int  # records deleted by this prune
    created_at: datetime = Field(default_factory=_now, sa_type=UTCDateTime)


class ApprovalRequest(SQLModel, table=True):
    """A tool call held for a human: bound by `binding_hash` to its tool, canonical arguments, policy set and caller.

    States and who moves them are documented on gateway.approvals.service.ApprovalService.
    """

    __tablename__ = "approval_requests"

    id: str = Field(primary_key=True)
    status: str = Field(index=True)  # pending, approved, denied, expired, cancelled, executed
    tool_name: str
    tool_call_id: str = Field(index=True)  # the id the model gave the call; released unchanged
    arguments: str = Field(sa_type=Text)  # the argument string as the model produced it
    canonical_arguments: str = Field(sa_type=Text)  # RFC 8785 form, what the binding hash covers
    binding_hash: str = Field(index=True)
    key_id: str = Field(index=True)  # the requesting key ("master" for the master key)
    key_name: str
    team_id: str | None = None
    model: str
    request_id: str
    policy: str  # the policy file whose rule gated the call
    policy_sha256: str
    rule_id: str
    risk: str
    reason: str | None = None  # the rule's message
    approver_roles: list[str] = Field(default_factory=list, sa_type=JSON)
    approver_teams: list[str] = Field(default_factory=list, sa_type=JSON)
    on_timeout: str = "deny"
    created_at: datetime = Field(default_factory=_now, index=True, sa_type=UTCDateTime)
    expires_at: datetime = Field(index=True, sa_type=UTCDateTime)
    decided_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    decided_by: str | None = None  # key id, "master" or "system"
    decided_by_name: str | None = None
    comment: str | None = Field(default=None, sa_type=Text)
    executed_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    executed_request_id: str | None = None


class ToolSuspension(SQLModel, table=True):
    """The kill switch: while a row exists, tool calls of that key (scope "key:<id>") or of everyone ("all") are
    denied."""

    __tablename__ = "tool_suspensions"

    scope: str = Field(primary_key=True)
    reason: str | None = None
    suspended_by: str
    created_at: datetime = Field(default_factory=_now, sa_type=UTCDateTime)


class PromptVersion(SQLModel, table=True):
    """One immutable version of a prompt: chat message templates, default model and parameters, a commit message."""

    __tablename__ = "prompt_versions"
    __table_args__ = (UniqueConstraint("prompt_id", "version"),)

    id: int | None = Field(default=None, primary_key=True, sa_type=BigIntegerKey)
    prompt_id: str = Field(index=True)
    version: int
    spec: dict[str, object] = Field(sa_type=JSON)  # messages, model, params, tools, response_format, description
    content_sha256: str  # of the canonical spec: an unchanged file syncs to no new version
    commit_message: str | None = None
    created_by: str
    created_at: datetime = Field(default_factory=_now, sa_type=UTCDateTime)


class PromptLabel(SQLModel, table=True):
    """Where a label (production, staging, ...) points; moved only by gateway.prompts.store.move_label."""

    __tablename__ = "prompt_labels"

    prompt_id: str = Field(primary_key=True)
    label: str = Field(primary_key=True)
    version: int
    updated_by: str
    updated_at: datetime = Field(default_factory=_now, index=True, sa_type=UTCDateTime)


class EvalRun(SQLModel, table=True):
    """One eval run against one of its targets: a run of N targets is N rows with the same run_id, so the promotion
    gate finds "a passing run of suite S against prompt P version N" with one indexed query. Written only by
    gateway.evals.store.EvalRunStore."""

    __tablename__ = "eval_runs"

    run_id: str = Field(primary_key=True)
    target_id: str = Field(primary_key=True)
    position: int  # the target's place in the run's list of targets
    suite_name: str
    suite_path: str
    suite_sha256: str = Field(index=True)  # of the suite file's bytes and then its dataset files' bytes
    target_kind: str  # prompt or model
    prompt_id: str | None = None
    prompt_version: int | None = None
    model: str | None = None
    git_commit: str | None = None
    status: str  # this target's: passed, failed, or incomplete (the run stopped early)
    run_status: str  # the whole run's: passed, failed, incomplete
    pass_rate: float  # this target's: passed (case, target) units over the units that ran (skipped ones aside)
    counts: dict[str, int] = Field(sa_type=JSON)  # this target's total, passed, failed, errors, skipped
    cost_usd_target: float = 0.0  # the run's, on every row
    cost_usd_judge: float = 0.0
    started_at: datetime = Field(sa_type=UTCDateTime)
    finished_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    created_at: datetime = Field(default_factory=_now, index=True, sa_type=UTCDateTime)
    # The canonical result, on the first target's row only (a matrix run would store it once per target); SQL NULL on
    # the others (none_as_null: JSON would store a JSON null, which IS NOT NULL does not skip).
    result: dict[str, object] | None = Field(default=None, sa_type=JSON(none_as_null=True))
