"""The record stage: one usage record per call, appended to the spool before the response completes."""

from __future__ import annotations

import time
from datetime import UTC, datetime

from gateway.audit.events import AuditEvent
from gateway.audit.log import AuditLog
from gateway.calls.context import CallContext
from gateway.errors import GatewayError
from gateway.pipeline.hooks import BaseHook
from gateway.providers.base import Reply
from gateway.usage.pricing import usd
from gateway.usage.spool import UsageSpool

# Which decision the audit record of a call names: the most severe, guardrails and tool rules alike.
SEVERITY = {"block": 4, "deny": 4, "require_approval": 3, "redact": 2, "warn": 1}


def usage_record(ctx: CallContext) -> dict[str, object]:
    principal = ctx.principal
    usage = ctx.usage
    elapsed = time.perf_counter() - ctx.started
    # Dated by the request's start: the budget period that admitted the call is the one it is charged to. The spool
    # writes the datetime itself (orjson, as isoformat() would): a quarter of the cost of now() - timedelta().
    started_at = datetime.fromtimestamp(time.time() - elapsed, UTC)
    return {
        "request_id": ctx.request_id,
        "key_id": principal.key_id if principal else None,
        "team_id": principal.team_id if principal else None,
        "model": ctx.model,
        "upstream_model": ctx.deployment.model if ctx.deployment else None,
        "prompt_tokens": usage.prompt_tokens if usage else 0,
        "completion_tokens": usage.completion_tokens if usage else 0,
        "cached_tokens": usage.cached_tokens if usage else 0,
        "cost_nanos": ctx.cost_nanos,
        "cost_usd": usd(ctx.cost_nanos),
        "latency_ms": round(elapsed * 1000, 3),
        "overhead_ms": round(ctx.overhead_ms(), 3),
        "status_code": ctx.status_code,
        "stream": ctx.stream,
        "error_code": ctx.error.code if ctx.error else None,
        "policy_sha256": ctx.policy_sha256,
        "decisions": ctx.decisions,
        "prompt_id": ctx.prompt_id,
        "prompt_version": ctx.prompt_version,
        "eval_run_id": ctx.eval_run_id,
        "created_at": started_at,
    }


class RecorderHook(BaseHook):
    """Records every call of an authenticated caller, failed ones included; anonymous 401s are not recorded."""

    name = "recorder"

    def __init__(self, spool: UsageSpool, audit: AuditLog | None = None) -> None:
        self.spool = spool
        self.audit = audit

    def after_response(self, ctx: CallContext, reply: Reply | None) -> None:
        self.spool.append(usage_record(ctx))
        self._audit(ctx)

    def on_error(self, ctx: CallContext, error: GatewayError) -> None:
        if ctx.principal is not None:
            self.spool.append(usage_record(ctx))
            self._audit(ctx)

    def _audit(self, ctx: CallContext) -> None:
        """Calls on which a policy decided something go to the audit log too (both spooled, no DB wait)."""
        if self.audit is None or not ctx.decisions:
            return
        worst = max(ctx.decisions, key=lambda decision: SEVERITY.get(str(decision.get("action")), 0))
        self.audit.record(
            AuditEvent.by(
                ctx.principal,
                "policy.decision",
                subject=ctx.request_id,
                request_id=ctx.request_id,
                model=ctx.model,
                policy_sha256=ctx.policy_sha256,
                outcome=str(worst.get("action")),
                rule_id=str(worst.get("rule")),
                risk=str(worst["risk"]) if worst.get("risk") else None,
                details={"decisions": ctx.decisions, "status_code": ctx.status_code, **prompt_details(ctx)},
            )
        )


def prompt_details(ctx: CallContext) -> dict[str, object]:
    """The registry prompt a call rendered, for the audit record of its decisions."""
    return {"prompt": {"id": ctx.prompt_id, "version": ctx.prompt_version}} if ctx.prompt_id else {}
