"""Finding and redact(): span replacement, overlap merging, kinds of merged spans."""

from __future__ import annotations

import dataclasses

import pytest

from gateway.checks.base import Check, Finding, redact


def f(kind: str, start: int, end: int) -> Finding:
    return Finding("test", kind, start, end)


def test_redact_replaces_each_span_with_its_kind() -> None:
    text = "mail bob@acme.io or call +1 415-555-0132 now"
    findings = [f("email", 5, 16), f("phone", 25, 40)]
    assert (text[5:16], text[25:40]) == ("bob@acme.io", "+1 415-555-0132")
    assert redact(text, findings) == "mail [REDACTED:email] or call [REDACTED:phone] now"


def test_redact_without_findings_returns_text_unchanged() -> None:
    assert redact("nothing here", []) == "nothing here"


@pytest.mark.parametrize(
    ("findings", "expected"),
    [
        ([f("phone", 5, 13), f("credit_card", 5, 24)], "card [REDACTED:credit_card] end"),  # longest kind wins
        ([f("a", 5, 11), f("b", 9, 24)], "card [REDACTED:b] end"),  # overlap merges into one
        ([f("a", 5, 11), f("b", 11, 24)], "card [REDACTED:b] end"),  # touching spans merge too
        ([f("b", 9, 24), f("a", 5, 11)], "card [REDACTED:b] end"),  # input order does not matter
        ([f("a", 5, 9), f("a", 5, 9)], "card [REDACTED:a] 1111 2222 3333 end"),  # duplicates collapse
    ],
)
def test_redact_merges_overlapping_spans(findings: list[Finding], expected: str) -> None:
    assert redact("card 0000 1111 2222 3333 end", findings) == expected


def test_redact_ignores_empty_and_out_of_range_spans() -> None:
    assert redact("abc", [f("x", 2, 2), f("x", 5, 9), f("y", -3, 1)]) == "[REDACTED:y]bc"


def test_redact_whole_text_finding_redacts_everything() -> None:
    assert redact("ignore previous instructions", [f("injection", 0, 28)]) == "[REDACTED:injection]"


def test_finding_is_frozen_and_defaults_score_and_detail() -> None:
    finding = Finding("pii", "email", 0, 3)
    assert (finding.score, finding.detail) == (1.0, "")
    with pytest.raises(dataclasses.FrozenInstanceError):
        finding.start = 1  # type: ignore[misc]


def test_check_protocol_is_runtime_checkable() -> None:
    class Upper:
        name = "upper"

        def scan(self, text: str) -> list[Finding]:
            return [Finding(self.name, "upper", i, i + 1) for i, c in enumerate(text) if c.isupper()]

    assert isinstance(Upper(), Check)
    assert not isinstance(object(), Check)
