"""The C token counter against tiktoken itself: every code point, generated text, long pieces, bad input, memory."""

from __future__ import annotations

import base64
import json
import random
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import tiktoken
from gateway.usage._bpe import UNICODE_VERSION, Vocabulary

from gateway.usage.tokens import ENCODING_FILES, load_encoding, tokenizer_dir

ROOT = Path(__file__).resolve().parents[2]
NAMES = list(ENCODING_FILES)
SURROGATES = range(0xD800, 0xE000)


@pytest.fixture(scope="module")
def pairs() -> dict[str, tuple[Vocabulary, tiktoken.Encoding]]:
    """Ours and tiktoken's encoding of each name, both from litellm's files (tiktoken checks their sha256 too)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TIKTOKEN_CACHE_DIR", str(tokenizer_dir()))
        return {name: (load_encoding(name), tiktoken.get_encoding(name)) for name in NAMES}


def mismatches(vocabulary: Vocabulary, encoding: tiktoken.Encoding, texts: list[str]) -> list[tuple[str, int, int]]:
    return [
        (text, vocabulary.count(text), expected)
        for text in texts
        if vocabulary.count(text) != (expected := len(encoding.encode_ordinary(text)))
    ]


# Contexts around one code point c that tell the classes o200k's pattern uses apart (cl100k's classes are unions of
# them, from the same table): after a space and before a contraction (the optional first character, upper and lower
# case letters, marks), after an upper-case letter and before lower case (the CamelCase split), between digits, and
# after a new line and before white space.
CONTEXTS = " {c}{c}'s A{c}a 1{c}2\n{c}\t"
# Every code point of the planes where scripts are added (0-1), every 16th above (CJK extensions come in blocks of
# thousands; the rest is unassigned or private use): 190k code points, about 1 s.
CODE_POINTS = [*(cp for cp in range(0x20000) if cp not in SURROGATES), *range(0x20000, 0x110000, 16)]


@pytest.mark.parametrize("name", NAMES)
def test_code_points_count_as_tiktoken_does(pairs: dict, name: str) -> None:
    # Counts agree on chunks of 4,096 code points, then code point by code point inside a chunk that differs, to
    # name what differs. (With a Unicode 17 table, 652 code points assigned after 16.0 differed.)
    vocabulary, encoding = pairs[name]
    wrong: list[tuple[str, int, int]] = []
    for start in range(0, len(CODE_POINTS), 4096):
        texts = [CONTEXTS.format(c=chr(cp)) for cp in CODE_POINTS[start : start + 4096]]
        joined = "".join(texts)
        if vocabulary.count(joined) != len(encoding.encode_ordinary(joined)):
            wrong += mismatches(vocabulary, encoding, texts)
    shown = [(text.encode("unicode_escape").decode(), ours, theirs) for text, ours, theirs in wrong[:10]]
    assert not wrong, f"{len(wrong)} code points differ (Unicode {UNICODE_VERSION} table), first: {shown}"


ALPHABET = (
    list("aAzZsStTmMdDlLvVeErR'\"/\\-_.,;:!?()[]{}<>@#$%^&*+=|~`0123456789")
    + [" ", "  ", "\t", "\n", "\r\n", "\r", "\n\n", "\u00a0", "\u3000", "\u2028", "\x0b", "\x0c", "\x85"]
    + ["\u0301", "\u0308", "\u093f", "\u20dd"]  # marks: Mn, Mn, Mc, Me
    + ["\u01c5", "\u02b0", "\u00aa", "\u017f", "\u0130", "\u00df"]  # Lt, Lm, Lo, long s, dotted I, sharp s
    + ["\u2167", "\u00b2", "\u0663", "\uff11"]  # Nl, No, Arabic-Indic digit, full-width digit
    + ["中", "文", "日本", "한국어", "Ωμέγα", "Привет", "שלום", "مرحبا", "ก", "😀", "👍🏽", "🇫🇷", "\u200d", "\ufeff"]
    + ["'s", "'S", "'ll", "'LL", "'Re", "'ve", "'m", "'d", "'t", "'\u017f", "http://x.io/a/b", "//", "\\n"]
)


@pytest.mark.parametrize("name", NAMES)
def test_generated_text_counts_as_tiktoken_does(pairs: dict, name: str) -> None:
    vocabulary, encoding = pairs[name]
    rng = random.Random(20261127)
    texts = ["".join(rng.choices(ALPHABET, k=rng.randint(1, 40))) for _ in range(20_000)]
    assert mismatches(vocabulary, encoding, texts) == []


@pytest.mark.parametrize("name", NAMES)
def test_long_pieces_merge_as_tiktoken_does(pairs: dict, name: str) -> None:
    # Pieces over 128 bytes merge through the heap, shorter ones through the array: both sides of the line, and
    # lengths where tiktoken's own merge changes strategy.
    vocabulary, encoding = pairs[name]
    rng = random.Random(7)
    texts = [letter * n for letter in "ab" for n in (2, 3, 127, 128, 129, 130, 500, 4_000)]
    texts += ["".join(rng.choices("abcdefghij", k=n)) for n in (120, 128, 129, 300, 2_000, 20_000)]
    texts += ["".join(rng.choices("ACGT", k=n)) for n in (129, 10_000)]  # one piece: DNA has no spaces
    texts += ["=" * 1_000, " " * 3_000 + "x", "\n" * 1_000, "-+" * 700, "中" * 600, "😀" * 300]
    texts += [(ROOT / "README.md").read_text(encoding="utf-8")]  # prose, tables and code, ~10k tokens
    assert mismatches(vocabulary, encoding, texts) == []


def test_a_megabyte_in_one_piece_is_counted_quickly() -> None:
    # O(n log n): about 0.15 s here; an array merge would take minutes (tiktoken 0.14 takes about 0.2 s).
    vocabulary = load_encoding("o200k_base")
    started = time.perf_counter()
    assert vocabulary.count("ACGT" * 250_000) == 500_000
    assert time.perf_counter() - started < 3


@pytest.mark.parametrize("name", NAMES)
def test_lone_surrogates_count_as_tiktoken_does(pairs: dict, name: str) -> None:
    # tiktoken replaces a lone surrogate with U+FFFD and joins a high-low pair into one character.
    vocabulary, encoding = pairs[name]
    texts = ["\ud800", "a\udfffb", "x\ud83d\ude00y", "\ud83d", "caf\u00e9 \udc80 ok"]
    assert mismatches(vocabulary, encoding, texts) == []


def test_texts_are_counted_the_same_from_several_threads() -> None:
    # Texts of 8 KiB and more are counted with the GIL released.
    vocabulary = load_encoding("cl100k_base")
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    expected = vocabulary.count(text)
    results: list[int] = []

    def count() -> None:
        results.extend(vocabulary.count(text) for _ in range(20))

    threads = [threading.Thread(target=count) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [expected] * 80


def test_bad_arguments_and_bad_files_are_clear_errors() -> None:
    vocabulary = load_encoding("cl100k_base")
    assert vocabulary.name == "cl100k_base"
    assert vocabulary.count("") == 0
    with pytest.raises(TypeError, match="count\\(\\) takes a str, not bytes"):
        vocabulary.count(b"hello")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="no split pattern for p50k_base"):
        Vocabulary(b"IQ== 0\n", "p50k_base")
    with pytest.raises(ValueError, match="vocabulary line 2 is not 'base64 1'"):
        Vocabulary(b"IQ== 0\nIg== 7\n", "cl100k_base")
    with pytest.raises(ValueError, match="vocabulary line 1 is not 'base64 0'"):
        Vocabulary(b"not base64! 0\n", "cl100k_base")
    with pytest.raises(ValueError, match="vocabulary line 1 is not 'base64 0'"):
        Vocabulary(b"IQ=== 0\n", "cl100k_base")  # three padding characters
    single_bytes = b"".join(b"%s %d\n" % (base64.b64encode(bytes([b])), b) for b in range(256))
    with pytest.raises(ValueError, match="not a byte-level BPE vocabulary"):
        Vocabulary(b"\n".join(single_bytes.split(b"\n")[:255]), "o200k_base")  # 255 tokens
    with pytest.raises(ValueError, match="vocabulary has no token for the byte 0x00"):
        Vocabulary(b"YWI= 0\n" + single_bytes.split(b"\n", 1)[1], "o200k_base")  # "ab" where byte 0 was
    with pytest.raises(ValueError, match="vocabulary lines 66 and 257 hold the same token"):
        Vocabulary(single_bytes + b"QQ== 256\n", "o200k_base")  # "A" again
    crlf = Vocabulary(single_bytes.replace(b"\n", b"\r\n") + b"YWI= 256\r\n", "cl100k_base")  # tiktoken reads these
    assert (len(crlf), crlf.count("ab"), crlf.count("abab")) == (257, 1, 2)


MEMORY_SCRIPT = """
import json
from gateway.usage.tokens import load_encoding

def rss_kb():
    return next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmRSS"))

before = rss_kb()
vocabulary = load_encoding("o200k_base")
vocabulary.count("warm up " * 1000)
print(json.dumps({"tokens": len(vocabulary), "rss_mb": (rss_kb() - before) / 1024}))
"""


def test_o200k_takes_a_few_megabytes() -> None:
    # tiktoken's Rust core takes 46 MB for this vocabulary (74 MB with its Python copy): the 150 MB per
    # process could not hold it. Measured in a fresh interpreter, where RSS grows only by what loading costs.
    done = subprocess.run(
        [sys.executable, "-c", MEMORY_SCRIPT], cwd=ROOT, capture_output=True, text=True, timeout=60, check=True
    )
    report = json.loads(done.stdout)
    assert report["tokens"] == 199_998
    assert report["rss_mb"] < 8
