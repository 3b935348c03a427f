"""OperatorLog: the operator's lines, one per HTTP request (built from the call's context when there is one),
one per refused key (at a bounded rate) and one per audited admin change. Never a prompt, a body or a secret.

Written through Python logging (loggers `gateway.requests`, `gateway.auth`, `gateway.admin`); the format and the
destination are gateway.telemetry.logformat's. A request line is one small dict handed to logging once the
response has been sent (the request-id middleware calls `request()`), and nothing at all is built when the request
log is off or its logger is not enabled for info.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from gateway.calls.context import CallContext
from gateway.telemetry.config import LogConfig

if TYPE_CHECKING:
    from starlette.types import Scope

    from gateway.audit.events import AuditEvent

REQUESTS = logging.getLogger("gateway.requests")
AUTH = logging.getLogger("gateway.auth")
ADMIN = logging.getLogger("gateway.admin")
INFO, WARNING = logging.INFO, logging.WARNING
QUIET_PATHS = ("/healthz", "/readyz")  # probes: every few seconds from every load balancer, and never news
PER_CALL_ACTIONS = frozenset({"policy.decision"})  # on the request line already


class LineRecord(logging.LogRecord):
    """The LogRecord of a line that is all fields, built in a fraction of the usual cost: `logger.info()` spent
    ~6 µs of its ~9 µs in LogRecord.__init__ and findCaller (the caller's frame, thread and process, none of which
    the line shows). Those attributes are constants here, set as instance attributes since formatters read
    them from the record's __dict__."""

    CONSTANTS: dict[str, object] = {
        "args": (),
        "exc_info": None,
        "exc_text": None,
        "stack_info": None,
        "funcName": None,
        "thread": None,
        "threadName": None,
        "process": None,
        "processName": None,
        "taskName": None,
        "pathname": "oplog",
        "filename": "oplog",
        "module": "oplog",
        "lineno": 0,
        "relativeCreated": 0.0,
    }

    def __init__(self, name: str, level: int, fields: dict[str, object]) -> None:
        self.__dict__.update(self.CONSTANTS)
        self.name, self.msg, self.levelno = name, fields, level
        self.levelname = "INFO" if level == INFO else logging.getLevelName(level)
        self.created = created = time.time()
        self.msecs = (created - int(created)) * 1000


def write(logger: logging.Logger, level: int, fields: dict[str, object]) -> None:
    """One line, through the logger's handlers (the caller has checked that the level is enabled)."""
    logger.handle(LineRecord(logger.name, level, fields))


class FailedAuthLimit:
    """At most `per_minute` lines in each minute; the others are counted, and the next line written says how
    many were left out, so a flood of bad keys costs a bounded number of lines."""

    def __init__(self, per_minute: int, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.per_minute = per_minute
        self.clock = clock
        self.window_start = -60.0
        self.written = 0
        self.suppressed = 0

    def admit(self) -> int | None:
        """None: leave this line out. Otherwise write it, noting the returned count of lines left out before."""
        now = self.clock()
        if now - self.window_start >= 60.0:
            self.window_start, self.written = now, 0
        if self.written >= self.per_minute:
            self.suppressed += 1
            return None
        self.written += 1
        suppressed, self.suppressed = self.suppressed, 0
        return suppressed


class OperatorLog:
    """What the request-id middleware calls once per response."""

    def __init__(
        self, config: LogConfig, *, quiet_paths: Iterable[str] = (), clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.requests = config.requests
        self.quiet = frozenset((*QUIET_PATHS, *quiet_paths))
        self.failed_auth = FailedAuthLimit(config.failed_auth_per_minute, clock=clock)

    def request(self, scope: Scope, status: int | None, latency_s: float, error: str | None) -> None:
        """One line for one answered request; `status` None when no response was started."""
        state = scope["state"]
        ctx: CallContext | None = state.get("call")
        if status is None:
            status = ctx.status_code if ctx is not None and ctx.error is not None else 500
        if ctx is not None and ctx.error is not None:
            error = ctx.error.code
        if status == 401:
            self._failed_auth(scope, error, latency_s)
        elif self.requests and scope["path"] not in self.quiet and REQUESTS.isEnabledFor(INFO):
            write(REQUESTS, INFO, request_line(scope, status, latency_s, error or state.get("error_code"), ctx))

    def _failed_auth(self, scope: Scope, error: str | None, latency_s: float) -> None:
        if not AUTH.isEnabledFor(WARNING) or (suppressed := self.failed_auth.admit()) is None:
            return
        client = scope.get("client")
        line: dict[str, object] = {
            "event": "auth_failed",
            "request_id": scope["state"]["request_id"],
            "method": scope["method"],
            "route": scope["path"],
            "status": 401,
            "error": error or scope["state"].get("error_code"),
            "client": client[0] if client else None,
            "latency_ms": round(latency_s * 1000, 3),
        }
        if suppressed:
            line["suppressed"] = suppressed  # failed-auth lines left out since the last one written
        write(AUTH, WARNING, line)


def request_line(
    scope: Scope, status: int, latency_s: float, error: str | None, ctx: CallContext | None
) -> dict[str, object]:
    """The fields of a request line: the request's, then the call's when the request was a model call."""
    line: dict[str, object] = {
        "event": "request",
        "request_id": scope["state"]["request_id"],
        "method": scope["method"],
        "route": scope["path"],
        "status": status,
        "error": error,
        "latency_ms": round(latency_s * 1000, 3),
    }
    if ctx is None:
        return line
    principal, usage, decisions = ctx.principal, ctx.usage, ctx.decisions
    line["overhead_ms"] = round(ctx.overhead_ms(), 3)
    line["key_id"] = principal.key_id if principal is not None else None
    line["team_id"] = principal.team_id if principal is not None else None
    line["model"] = ctx.model or None
    line["upstream_model"] = ctx.deployment.model if ctx.deployment is not None else None
    line["stream"] = ctx.stream
    line["prompt_tokens"] = usage.prompt_tokens if usage is not None else None
    line["completion_tokens"] = usage.completion_tokens if usage is not None else None
    line["cost_usd"] = ctx.cost_nanos / 1e9
    if decisions:
        line["decisions"] = [decision_summary(d) for d in decisions]
        line["policy_sha256"] = ctx.policy_sha256
        approvals = [d["approval_id"] for d in decisions if d.get("approval_id") and d.get("action") != "released"]
        if approvals:
            line["approvals_created"] = approvals
    if ctx.prompt_id:
        line["prompt_id"], line["prompt_version"] = ctx.prompt_id, ctx.prompt_version
    return line


def decision_summary(decision: dict[str, object]) -> dict[str, object]:
    """Which rule decided what, at which stage: no finding text, no tool arguments."""
    summary = {"stage": decision.get("stage"), "rule": decision.get("rule"), "action": decision.get("action")}
    if decision.get("shadow"):
        summary["shadow"] = True
    if decision.get("approval_id"):
        summary["approval_id"] = decision["approval_id"]
    return summary


def log_admin_event(event: AuditEvent) -> None:
    """AuditLog's observer: one line per audited change made by a person or by the gateway itself (keys, teams,
    approvals, prompt labels, kill switch, policy reloads, audit pruning). The event's `details` stay in the audit
    log: the line says who did what to which subject, and the event id finds the rest."""
    if event.action in PER_CALL_ACTIONS or not ADMIN.isEnabledFor(INFO):
        return
    write(
        ADMIN,
        INFO,
        {
            "event": "admin",
            "action": event.action,
            "actor": event.actor,
            "actor_role": event.actor_role,
            "actor_team": event.actor_team,
            "subject": event.subject,
            "outcome": event.outcome,
            "reason": event.reason,
            "request_id": event.request_id,
            "audit_event_id": str(event.event_id),
        },
    )
