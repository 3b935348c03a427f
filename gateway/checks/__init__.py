"""The checks a policy names with `check:` (PII, secrets, prompt injection, operator lists, context checks).

Each answers the Check protocol of base.py; plug-ins register in the `gateway.checks` entry-point group."""

from gateway.checks.base import Check, Finding, redact
from gateway.checks.registry import BUILTIN_CHECKS, load_entry_point_check

__all__ = ["BUILTIN_CHECKS", "Check", "Finding", "load_entry_point_check", "redact"]
