"""RegexCheck, KeywordCheck and TopicCheck: matching rules, configuration errors, the \\b fast path."""

from __future__ import annotations

import re

import pytest

from gateway.checks.lists import KeywordCheck, RegexCheck, TopicCheck


def found(check: RegexCheck | KeywordCheck, text: str) -> list[str]:
    return [text[f.start : f.end] for f in check.scan(text)]


def test_regex_reports_every_match_of_every_pattern_in_order() -> None:
    check = RegexCheck(patterns=[r"\bEMP-\d{6}\b", r"PRJ-[A-Z]+"], kind="internal_id")
    text = "PRJ-VEGA owner EMP-004512, reviewer EMP-000001; not XEMP-123456"
    assert found(check, text) == ["PRJ-VEGA", "EMP-004512", "EMP-000001"]
    assert {f.kind for f in check.scan(text)} == {"internal_id"}


@pytest.mark.parametrize(
    ("patterns", "message"),
    [
        (["ok", "(unclosed"], r"patterns\[1\] '\(unclosed' is not a valid regular expression: missing \)"),
        (["a*"], r"patterns\[0\] 'a\*' matches the empty string"),
        ([], "non-empty list"),
        ("EMP-\\d+", "non-empty list"),
    ],
)
def test_regex_refuses_bad_patterns_with_a_clear_error(patterns: list[str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        RegexCheck(patterns=patterns)


@pytest.mark.parametrize(
    "pattern",
    [
        r"\bEMP-\d{6}\b",
        r"\b\d{3}\b",
        r"(?i)\binternal[-_ ]only\b",
        r"\bPRJ-(?:ATLAS|ORION)\b",  # alternation inside a group keeps the fast path
        r"\bab|cd",  # top-level alternation: compiled as written
        r"\b-x",  # a non-word first character needs a word character before it
        r"\bé\w+",
        r"\b[|]x",
    ],
)
def test_regex_boundary_fast_path_matches_exactly_like_re(pattern: str) -> None:
    texts = [
        "EMP-123456 xEMP-123456 EMP-1234567 (EMP-000001) internal only INTERNAL-ONLY internalonly",
        "123 1234 a123 123a _123 -123- ab cd xab abx PRJ-ATLAS PRJ-ORIONX a-x -x é élan cafélan |x a|x",
    ]
    check = RegexCheck(patterns=[pattern])
    for text in texts:
        assert found(check, text) == [m.group() for m in re.finditer(pattern, text) if m.group()], text


def test_keywords_whole_words_case_insensitive_by_default() -> None:
    check = KeywordCheck(words=["merger", "Falcon-9X", "C++2x"])
    text = "MERGER talks; mergers; emerger; falcon-9x; Falcon-9XL; C++2x? C++2xx"
    assert found(check, text) == ["MERGER", "falcon-9x", "C++2x"]


def test_keywords_phrases_match_any_whitespace_and_prefixes_match_word_starts() -> None:
    check = KeywordCheck(words=["project nightingale", "layoff*"])
    assert found(check, "Project\n  Nightingale and the layoffs") == ["Project\n  Nightingale", "layoffs"]


def test_keywords_case_sensitive_and_substring_modes() -> None:
    assert found(KeywordCheck(words=["Orion"], case_sensitive=True), "orion Orion") == ["Orion"]
    assert found(KeywordCheck(words=["merge"], whole_words=False), "emerger") == ["merge"]


def test_keywords_detail_names_the_listed_word() -> None:
    (finding,) = KeywordCheck(words=["Bluebird"]).scan("the bluebird launch")
    assert (finding.kind, finding.detail) == ("keyword", "keyword 'Bluebird'")


def test_keywords_thousand_words_still_match() -> None:
    words = [f"codename{i}" for i in range(1000)]
    assert found(KeywordCheck(words=words), "leak of codename999 and codename5x") == ["codename999"]


@pytest.mark.parametrize("words", [[], ["ok", ""], ["*"], "single string"])
def test_keywords_refuse_empty_configuration(words: list[str]) -> None:
    with pytest.raises(ValueError):
        KeywordCheck(words=words)


def test_topics_need_min_hits_distinct_keywords() -> None:
    check = TopicCheck(topics={"gambling": ["casino*", "odds", "bet"], "weapons": ["gun", "ammo"]})
    assert check.scan("What are the odds? odds! odds.") == []  # one keyword, however often
    (finding,) = check.scan("Best odds at the casinos in Vegas?")
    assert (finding.kind, finding.start, finding.end) == ("topic:gambling", 0, 34)
    assert finding.detail == "2 keywords: casino*, odds"
    assert [f.kind for f in TopicCheck(topics={"weapons": ["gun"]}, min_hits=1).scan("a gun")] == ["topic:weapons"]


@pytest.mark.parametrize(
    ("topics", "min_hits"),
    [({}, 2), ({"x": []}, 2), ({"x": "gun"}, 2), ({"x": ["gun"]}, 0)],
)
def test_topics_refuse_bad_configuration(topics: dict[str, list[str]], min_hits: int) -> None:
    with pytest.raises(ValueError):
        TopicCheck(topics=topics, min_hits=min_hits)
