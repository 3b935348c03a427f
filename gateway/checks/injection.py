"""Prompt-injection check: override phrases, jailbreak personas, prompt extraction and hidden characters, scored 0..1.

Speed (2-core dev box, CPython 3.11): about 8 µs per KB of ASCII chat text, 25-45 µs per KB of accented
or Cyrillic text (Unicode normalisation); one Aho-Corasick pass over the normalised text finds trigger
words, and only the patterns they trigger run.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

import ahocorasick

from gateway.checks.base import Finding
from gateway.checks.injection_patterns import DISCUSSION_CUES, IMPERATIVE_LEAD, PATTERNS, QUOTES

# Invisible characters. Tag characters (U+E0000-E007F) spell ASCII invisibly and have no place in
# chat text except inside subdivision flags (England, Scotland, Wales), which are removed first.
_FLAG_SEQUENCE = re.compile("\U0001f3f4[\U000e0030-\U000e0039\U000e0061-\U000e007a]{2,6}\U000e007f")
_ZERO_WIDTH = frozenset("\u200b\u200c\u200d\u2060\u2061\u2062\u2063\u2064\ufeff")
_BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
_DROP = {ord(c): None for c in _ZERO_WIDTH | _BIDI_CONTROLS | {"\u200e", "\u200f", "\u00ad"}}
# Letters that look Latin in other scripts (Cyrillic, Greek), mapped so "ignоre" with a Cyrillic o reads
# as "ignore"; typographic quotes, so "you’re" reads as "you're".
_CONFUSABLES = str.maketrans(
    "аеорсухіјѕԁԛԝАВЕКМНОРСТХІЈЅαοрντυΑΒΕΗΙΚΜΝΟΡΤΧΥΖ", "aeopcyxijsdqwABEKMHOPCTXIJSaopvtuABEHIKMNOPTXYZ"
)
_QUOTES = (("’", "'"), ("‘", "'"), ("‛", "'"), ("“", '"'), ("”", '"'), ("„", '"'), ("«", '"'), ("»", '"'))
_COMBINING = re.compile(r"[\u0300-\u036f]")
_TAG = re.compile("[\U000e0000-\U000e007f]")
_INVISIBLE = re.compile("[\u00ad\u200b-\u200f\u202a-\u202e\u2060-\u2069\ufeff\U000e0000-\U000e007f]")
_SPLIT_WORD = re.compile("(?<=[A-Za-z])[\u200b\u200c\u200d\u2060-\u2064\ufeff](?=[A-Za-z])")
# Cyrillic and Greek letters, and runs of Latin ones: a Latin run touching a Cyrillic or Greek letter is a
# word spelt with look-alikes. Mapping only then keeps Russian or Greek text at C speed.
_OTHER_SCRIPTS = re.compile("[\u0370-\u04ff]")
_LATIN_RUN = re.compile("[A-Za-z]+")


@dataclass(frozen=True, slots=True)
class Normalised:
    """The text as the patterns see it, and the invisible-character evidence removed from it."""

    text: str
    tag_chars: int = 0
    bidi_controls: int = 0
    split_words: int = 0  # zero-width characters between two Latin letters ("ig\u200bnore")


def normalise(text: str) -> Normalised:
    """NFKC, confusables to Latin, accents off, casefold; tag characters decoded to the ASCII they hide."""
    if text.isascii():
        return Normalised(text.lower())
    tags, bidi, split, hidden = 0, 0, 0, ""
    if _INVISIBLE.search(text):  # each step below is a C-speed scan; a Python loop costs 150 µs per KB
        text = _FLAG_SEQUENCE.sub("", text)
        tag_chars = _TAG.findall(text)
        tags = len(tag_chars)
        bidi = sum(text.count(c) for c in _BIDI_CONTROLS)
        split = len(_SPLIT_WORD.findall(text))
        hidden = "".join(chr(ord(c) - 0xE0000) for c in tag_chars).lower()
        text = _TAG.sub("", text).translate(_DROP)
    visible = unicodedata.normalize("NFKC", text)
    if _OTHER_SCRIPTS.search(visible) and _has_mixed_script_word(visible):
        visible = visible.translate(_CONFUSABLES)
    for curly, straight in _QUOTES:
        visible = visible.replace(curly, straight)
    visible = _COMBINING.sub("", unicodedata.normalize("NFD", visible)).casefold()
    return Normalised(visible + ("\n" + hidden if hidden else ""), tags, bidi, split)


def _has_mixed_script_word(text: str) -> bool:
    for run in _LATIN_RUN.finditer(text):
        start, end = run.span()
        if (start and _OTHER_SCRIPTS.match(text, start - 1)) or _OTHER_SCRIPTS.match(text, end):
            return True
    return False


class InjectionCheck:
    """Prompt-injection and jailbreak heuristics producing one score in 0..1.

    Parameters (policy YAML `params`):
        threshold: the score at or above which the text is reported; default 0.5.

    Signals (weights in gateway/checks/injection_patterns.py) are combined as independent
    evidence, ``1 - prod(1 - w)``: override phrases ("ignore all previous instructions", "disregard
    the above", "forget your rules"), jailbreak personas (DAN, developer mode, "pretend you are an AI
    without restrictions"), system-prompt impersonation and extraction, chat-template tokens, and
    invisible characters (any Unicode tag character 0.9, bidi overrides 0.6, zero-width characters
    splitting words 0.3-0.55). English, Spanish, French and German phrasings are covered.

    Text is normalised first (NFKC, Cyrillic/Greek look-alikes, accents, case, zero-width and bidi
    characters removed, tag characters decoded), so obfuscated phrasings match too.

    Discussions about injection are not injections: an override phrase inside quotes in a sentence
    with discussion cues ("attack", "defend", "detect", "such as", "paper"...) counts 0.2 of its
    weight; with cues but no quotes, or not in the imperative (reported speech: "my manager told me
    to ignore the previous instructions"), 0.5. An attacker can borrow that framing; this check is a
    fast first layer, not a classifier.

    One whole-text finding (``kind="injection"``, span ``0..len(text)``) carries the score and the
    names of the signals that fired.
    """

    name = "injection"

    def __init__(self, *, threshold: float = 0.5):
        if not 0 < threshold <= 1:
            raise ValueError(f"threshold must be in (0, 1], got {threshold}")
        self.threshold = threshold
        self._automaton = ahocorasick.Automaton()
        by_trigger: dict[str, list[int]] = {}
        for index, pattern in enumerate(PATTERNS):
            for trigger in pattern.triggers:
                by_trigger.setdefault(trigger, []).append(index)
        for trigger, indexes in by_trigger.items():
            self._automaton.add_word(trigger, tuple(indexes))
        self._automaton.make_automaton()

    def scan(self, text: str) -> list[Finding]:
        score, signals = self.score(text)
        if score < self.threshold:
            return []
        return [Finding("injection", "injection", 0, len(text), score=round(score, 3), detail=", ".join(signals))]

    def score(self, text: str) -> tuple[float, list[str]]:
        """The injection score of `text` and the names of the signals behind it."""
        norm = normalise(text)
        weights: dict[str, float] = {}
        if norm.tag_chars:
            weights["tag characters"] = 0.9
        if norm.bidi_controls:
            weights["bidi controls"] = 0.6
        if norm.split_words:
            weights["zero-width characters in words"] = 0.3 if norm.split_words < 3 else 0.55
        triggered = {index for _, indexes in self._automaton.iter(norm.text) for index in indexes}
        for index in sorted(triggered):
            pattern = PATTERNS[index]
            for match in pattern.regex.finditer(norm.text):
                weight = pattern.weight * _discount(norm.text, match, imperative=pattern.imperative)
                weights[pattern.name] = max(weights.get(pattern.name, 0.0), weight)
        remaining = 1.0
        for weight in weights.values():
            remaining *= 1.0 - weight
        signals = [name for name, _ in sorted(weights.items(), key=lambda kv: -kv[1])]
        return 1.0 - remaining, signals


def _discount(text: str, match: re.Match[str], *, imperative: bool) -> float:
    """How much of a phrase's weight counts, given the sentence it sits in (see InjectionCheck)."""
    start, end = match.span()
    sentence_start = max(
        (i + len(mark) for mark in (". ", "? ", "! ", "\n", ": ", "; ") if (i := text.rfind(mark, 0, start)) != -1),
        default=0,
    )
    ends = [i for i in (text.find(mark, end) for mark in (". ", "?", "!", "\n", "; ")) if i != -1]
    sentence_end = min(ends, default=len(text))
    cued = DISCUSSION_CUES.search(text[sentence_start:start] + " " + text[end:sentence_end]) is not None
    quoted = _quote_count(text, sentence_start, start) % 2 == 1
    if cued and quoted:
        return 0.2
    if cued:
        return 0.5
    if imperative and not quoted and IMPERATIVE_LEAD.fullmatch(text, sentence_start, start) is None:
        return 0.5
    return 1.0


def _quote_count(text: str, start: int, end: int) -> int:
    """Quote marks in text[start:end], not counting apostrophes inside words (don't, j'ai)."""
    return sum(
        1
        for i in range(start, end)
        if text[i] in QUOTES
        and not (text[i] == "'" and 0 < i < len(text) - 1 and text[i - 1].isalpha() and text[i + 1].isalpha())
    )
