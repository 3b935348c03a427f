"""Model-free guardrail checks (PII, secrets, prompt injection, operator lists) behind one Check protocol."""

from gateway.guardrails.base import Check, Finding, redact
from gateway.guardrails.registry import BUILTIN_CHECKS, load_entry_point_check

__all__ = ["BUILTIN_CHECKS", "Check", "Finding", "load_entry_point_check", "redact"]
