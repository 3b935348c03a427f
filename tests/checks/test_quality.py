"""Measured quality of the built-in checks on the labelled sets in tests/checks/data/.

Each check must reach precision >= 0.95 and recall >= 0.90 on its cases: the development set
(data/<check>.yaml) plus, for pii, secrets and injection, the held-out rounds written later
(data/holdout/, data/blind/, whose headers record their first, untuned scores). Span checks are scored
per value (a finding counts when its kind and exact text match a labelled value); whole-text checks
per case (injection) or per case and topic (topics). Run with `-s` to see the tables.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from gateway.checks.base import Check
from gateway.checks.registry import BUILTIN_CHECKS

DATA = Path(__file__).parent / "data"
MIN_PRECISION = 0.95
MIN_RECALL = 0.90


@dataclass
class Score:
    tp: int = 0
    fp: int = 0
    fn: int = 0
    errors: list[str] = field(default_factory=list)

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 1.0

    @property
    def recall(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 1.0


ROUNDS = ("", "holdout", "blind")


def build_check(name: str) -> Check:
    """The check configured as its development set's `config` says (defaults when there is none)."""
    data = yaml.safe_load((DATA / f"{name}.yaml").read_text(encoding="utf-8"))
    return BUILTIN_CHECKS[name](**data.get("config", {}))


def load_cases(name: str, round_name: str = "") -> list[dict[str, Any]]:
    """The cases of one round ("" = development set); empty when the check has no such round."""
    path = DATA / round_name / f"{name}.yaml"
    return yaml.safe_load(path.read_text(encoding="utf-8"))["cases"] if path.exists() else []


def expected_spans(check: Check, case: dict[str, Any]) -> Counter[tuple[str, str]]:
    expect = case.get("expect") or {}
    if isinstance(expect, list):  # regex / keywords: a list of values of the check's one kind
        kind = getattr(check, "kind", "keyword")
        return Counter((kind, value) for value in expect)
    return Counter((kind, value) for kind, values in expect.items() for value in values)


def score_spans(check: Check, cases: list[dict[str, Any]]) -> dict[str, Score]:
    """Per-kind scores (plus "all") of a span check: exact kind and text of each finding."""
    scores: dict[str, Score] = {"all": Score()}
    for case in cases:
        text = case["text"]
        expected = expected_spans(check, case)
        for finding in check.scan(text):
            key = (finding.kind, text[finding.start : finding.end])
            kind_score = scores.setdefault(finding.kind, Score())
            if expected[key] > 0:
                expected[key] -= 1
                kind_score.tp += 1
                scores["all"].tp += 1
            else:
                kind_score.fp += 1
                scores["all"].fp += 1
                kind_score.errors.append(f"FP {key[1]!r} in {text[:90]!r}")
        for (kind, value), missing in expected.items():
            if missing > 0:
                kind_score = scores.setdefault(kind, Score())
                kind_score.fn += missing
                scores["all"].fn += missing
                kind_score.errors.append(f"FN {value!r} in {text[:90]!r}")
    return scores


def score_whole_text(check: Check, cases: list[dict[str, Any]]) -> dict[str, Score]:
    """Per-label scores of a whole-text check: injection (true/false) or topics (a list of topic names)."""
    scores: dict[str, Score] = {"all": Score()}
    for case in cases:
        text = case["text"]
        expect = case.get("expect") or []
        expected = {"injection"} if expect is True else set() if expect is False else {f"topic:{t}" for t in expect}
        found = {f.kind for f in check.scan(text)}
        for label in expected | found:
            kind_score = scores.setdefault(label, Score())
            outcome = "tp" if label in expected and label in found else "fp" if label in found else "fn"
            for s in (kind_score, scores["all"]):
                setattr(s, outcome, getattr(s, outcome) + 1)
            if outcome != "tp":
                kind_score.errors.append(f"{outcome.upper()} {text[:100]!r}")
    return scores


SPAN_CHECKS = ["pii", "secrets", "regex", "keywords"]
WHOLE_TEXT_CHECKS = ["injection", "topics"]


def render(name: str, scores: dict[str, Score]) -> str:
    lines = [f"{name:<26} {'precision':>9} {'recall':>7} {'tp':>4} {'fp':>4} {'fn':>4}"]
    for kind, s in sorted(scores.items(), key=lambda item: (item[0] != "all", item[0])):
        label = name if kind == "all" else f"  {kind}"
        lines.append(f"{label:<26} {s.precision:>9.3f} {s.recall:>7.3f} {s.tp:>4} {s.fp:>4} {s.fn:>4}")
    errors = [e for kind, s in sorted(scores.items()) if kind != "all" for e in s.errors]
    return "\n".join(lines + [f"    {e}" for e in errors])


def score(name: str, check: Check, cases: list[dict[str, Any]]) -> dict[str, Score]:
    return score_spans(check, cases) if name in SPAN_CHECKS else score_whole_text(check, cases)


@pytest.mark.parametrize("name", SPAN_CHECKS + WHOLE_TEXT_CHECKS)
def test_quality_labelled_set_meets_precision_and_recall_targets(name: str) -> None:
    check = build_check(name)
    scores = score(name, check, [case for r in ROUNDS for case in load_cases(name, r)])
    rounds = []
    for round_name in ROUNDS:
        round_cases = load_cases(name, round_name)
        if round_cases:
            s = score(name, check, round_cases)["all"]
            rounds.append(
                f"  {round_name or 'development':<24} {s.precision:>9.3f} {s.recall:>7.3f}  ({len(round_cases)} cases)"
            )
    table = render(name, scores) + "\n" + "\n".join(rounds)
    print("\n" + table)
    total = scores["all"]
    assert total.precision >= MIN_PRECISION and total.recall >= MIN_RECALL, table


@pytest.mark.parametrize("name", SPAN_CHECKS + WHOLE_TEXT_CHECKS)
def test_quality_labelled_set_has_50_positives_and_50_hard_negatives(name: str) -> None:
    cases = load_cases(name)
    positives = sum(1 for case in cases if case.get("expect"))
    assert positives >= 50 and len(cases) - positives >= 50
