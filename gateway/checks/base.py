"""The Check protocol every guardrail check implements, its Finding, and span redaction."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable


@dataclass(frozen=True, slots=True)
class Finding:
    """One thing a check found in a text.

    `start`/`end` index the scanned string (``text[start:end]`` is what was found); whole-text
    findings (injection, topics) span ``0..len(text)``. `detail` is short human text for logs and
    decisions and never contains the secret or personal value itself.
    """

    check: str
    kind: str
    start: int
    end: int
    score: float = 1.0
    detail: str = ""


@runtime_checkable
class Check(Protocol):
    """A model-free check: pure, synchronous and fast, since it runs on every message and stream window.

    `name` is the check's type name as written in policy YAML (``"pii"``); `scan` must not do I/O,
    must return the same findings for the same text (an internal memo is fine, shared state is not),
    and returns findings in order of `start`. Checks are built once per policy load and shared by
    every request, so `__init__` does the slow work (compiling, loading tables).
    """

    name: str

    def scan(self, text: str) -> list[Finding]: ...


def redact(text: str, findings: Sequence[Finding]) -> str:
    """Replace each finding's span with ``[REDACTED:<kind>]``, merging overlapping or touching spans.

    A merged span takes the kind of its longest member (the first one on a tie), so a card number
    that a phone pattern also matched reads ``[REDACTED:credit_card]``. Findings with an empty or
    out-of-range span are ignored. Whole-text findings redact the whole text: pass only the findings
    of checks whose action is ``redact``.
    """
    parts: list[str] = []
    cursor = 0
    for start, end, placeholder in redaction_spans(text, findings):
        parts.append(text[cursor:start])
        parts.append(placeholder)
        cursor = end
    parts.append(text[cursor:])
    return "".join(parts)


def redaction_spans(text: str, findings: Sequence[Finding]) -> list[tuple[int, int, str]]:
    """The (start, end, placeholder) replacements `redact` makes, in order, none overlapping or touching."""
    spans = sorted(
        (max(f.start, 0), min(f.end, len(text)), f.kind) for f in findings if min(f.end, len(text)) > max(f.start, 0)
    )
    merged: list[tuple[int, int, str, int]] = []  # start, end, kind, length of the kind's own span
    for start, end, kind in spans:
        if merged and start <= merged[-1][1]:
            m_start, m_end, m_kind, m_length = merged[-1]
            if end - start > m_length:
                m_kind, m_length = kind, end - start
            merged[-1] = (m_start, max(m_end, end), m_kind, m_length)
        else:
            merged.append((start, end, kind, end - start))
    return [(start, end, f"[REDACTED:{kind}]") for start, end, kind, _ in merged]
