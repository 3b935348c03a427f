"""StreamGuard: a streamed answer, however it is split into chunks, reads exactly as the same answer non-streamed.

The property is checked for every built-in check that can redact (pii, secrets, regex, keywords), alone and
two at once: hand-written texts split at every offset, in three-way splits and one character per chunk, and
the labelled sets in tests/checks/data/ (joined into paragraphs longer than the window) at every offset.
It drives the real StreamGuard and GuardrailEngine over SSE bytes: thousands of streams, too many for the app.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
import yaml

from gateway.calls.context import CallContext
from gateway.checks.context import build_check
from gateway.errors import PolicyDenied
from gateway.policy.guardrails import GuardrailEngine
from gateway.policy.store import PolicyStore
from gateway.policy.streamguard import STEP, WINDOW, StreamGuard, compose_edits

DATA = Path(__file__).parent.parent / "checks" / "data"
PAD = "Thanks for waiting. Here is everything the team asked me to pass on before the end of this week: "


def guardrail_yaml(check: str, params: dict[str, object] | None = None) -> str:
    guardrail = {"id": f"{check}-out", "stage": "output", "check": check, "action": "redact", "params": params or {}}
    return orjson.dumps(guardrail).decode()


def dataset_config(name: str) -> dict[str, object]:
    return dict(yaml.safe_load((DATA / f"{name}.yaml").read_text(encoding="utf-8")).get("config", {}))


POLICIES = {
    "pii": [guardrail_yaml("pii")],
    "secrets": [guardrail_yaml("secrets")],
    "regex": [guardrail_yaml("regex", dataset_config("regex"))],
    "keywords": [guardrail_yaml("keywords", dataset_config("keywords"))],
    "secrets+pii": [guardrail_yaml("secrets"), guardrail_yaml("pii")],  # the second sees the first's redactions
    # A second guardrail whose matches cut into, and join, the first one's placeholders.
    "pii+regex": [guardrail_yaml("pii"), guardrail_yaml("regex", {"patterns": ["EDACTED:em", "ail\\] and \\["]})],
}

DATA_SETS = {"pii", "secrets", "regex", "keywords"}  # the checks with a labelled set of span findings
TEXTS = {
    "pii": [
        "Call me on +44 20 7123 4567 today.",
        "Write to jane.doe@example.com.tr or to bob@mail.example.co.uk, both read daily.",
        PAD + "Call me on +44 20 7123 4567 today, or on (212) 555-0187 after six, or mail jane.doe@example.com.tr.",
        PAD + "Card 4111 1111 1111 1111 123, IBAN DE89 3704 0044 0532 0130 00, SSN 536-22-8145, host 203.0.113.9.",
        PAD + PAD + "my ssn is 536 22 8145 and the server at 2001:db8::1 logs 10.0.0.1/8 and 81.2.69.160 as well.",
        "version 1.2.3.4 " + PAD + "ring 020 7946 0958, git@github.com:acme/api.git, logo@2x.png, lodash@4.17.21.",
    ],
    "secrets": [
        "token=ghp_kO7rRu5ykYYqhXHdO2x93CJHLS45gqIO2zVZ and done",
        PAD + "Authorization: Bearer reGqwKKHL9iSc6J5Xg3mXBOKOgxYsYYp. Then aws_access_key_id=AKIAYC3EDQMEVXRVCQUR ok",
        PAD + "sk-proj-LB4pyyRyMX5oZCsSauqrBkL60W4Ycs1jZ43Kjr2ZZJRX6FwIaBcDeFgHiJkLmNoPqRsTuVwXyZ0123456789abcdefgh"
        'ijklmnopqrstuvwxyz is the key, and password: "rMt#Tmv7Yl1RYQ" is the other.',
        "key:\n-----BEGIN RSA PRIVATE KEY-----\n"
        "tZUkXe7NVzN067SOqQ26UAKIEWjzkNJSCUY4y3BKM7U1zfmXnHRn77pxNOA0Di5v\n"
        "26MfDCPc4RLQmH8uA+y4j7zMKn84rLisv0vNNojWKCXH6rc0hBl3GDPIF/MMajmo\n"
        "-----END RSA PRIVATE KEY-----\nthanks",
    ],
    "regex": [PAD + "EMP-004512 and CTR-2024-AB, PRJ-ORION is internal-only; EMP-0045123 is not an id."],
    "keywords": [PAD + "Project   Nightingale and the merger; bluebirds are not bluebird, Falcon-9X is. Layoffs too."],
}
TEXTS["pii+regex"] = ["mail jane@example.org and bob@example.org now", PAD + "a@b.io and c@d.io and e@f.io, ok"]
TEXTS["secrets+pii"] = [TEXTS["secrets"][1] + " mail jane@example.org", PAD + "password: jane.doe@example.org12"]
# Composed redactions first, then enough text that later cuts map positions across them.
TEXTS["pii+regex"].append("mail jane@example.org and bob@example.org now, or x@y.io; " + PAD + PAD)
TEXTS["secrets+pii"].append("password: jane.doe@example.org12 or mail bob@acme.io " + PAD + PAD)


def dataset_paragraphs(name: str, size: int = 2 * WINDOW) -> list[str]:
    """The labelled set's texts joined into paragraphs longer than the window, so cuts land inside values."""
    cases = yaml.safe_load((DATA / f"{name}.yaml").read_text(encoding="utf-8"))["cases"]
    paragraphs, current = [], ""
    for case in cases:
        current = f"{current} {case['text']}" if current else case["text"]
        if len(current) >= size:
            paragraphs.append(current)
            current = ""
    return paragraphs + ([current] if current else [])


def splits(text: str, *, more: bool = True) -> Iterator[list[str]]:
    """Two pieces at every offset; with `more`, also a few three-way splits and one character per chunk."""
    for i in range(1, len(text)):
        yield [text[:i], text[i:]]
    if not more:
        return
    step = max(1, len(text) // 7)
    for i, j in itertools.combinations(range(1, len(text), step), 2):
        yield [text[:i], text[i:j], text[j:]]
    yield list(text)


def event(payload: dict[str, object]) -> bytes:
    return b"data: " + orjson.dumps(payload) + b"\n\n"


def content_of(out: bytes) -> str:
    text = ""
    for block in out.split(b"\n\n"):
        if block.startswith(b"data: {"):
            for choice in orjson.loads(block[6:]).get("choices") or ():
                text += choice["delta"].get("content") or ""
    return text


class Harness:
    """One policy set, and both ways of answering: non-streamed through the engine, streamed through a guard."""

    def __init__(self, folder: Path, guardrails: list[str]) -> None:
        folder.mkdir()
        (folder / "p.yaml").write_text("name: p\nguardrails:\n" + "".join(f"  - {g}\n" for g in guardrails))
        self.engine = GuardrailEngine(PolicyStore(str(folder), make_check=build_check))
        self.guardrails = self.engine.guardrails(self.ctx(), "output")

    @staticmethod
    def ctx() -> CallContext:
        return CallContext(request_id="r", operation="chat", raw=b"", authorization=None, model="m")

    async def whole(self, text: str) -> str:
        slot = {"t": text}
        await self.engine.run(self.ctx(), "output", [(slot, "t")], self.guardrails)
        return slot["t"]

    async def streamed(self, pieces: list[str]) -> tuple[str, list[str]]:
        """The client's text, and what each upstream chunk released at once."""
        ctx, guard = self.ctx(), StreamGuard(self.engine, self.guardrails)
        released = []
        for piece in pieces:
            out = await guard.on_event(ctx, event({"id": "s", "choices": [{"index": 0, "delta": {"content": piece}}]}))
            released.append(content_of(out))
        end = {"id": "s", "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
        tail = content_of(await guard.on_event(ctx, event(end)) + await guard.on_event(ctx, b"data: [DONE]\n\n"))
        return "".join(released) + tail, released


@pytest.mark.parametrize("policy", sorted(POLICIES))
async def test_streamed_output_equals_non_streamed_at_every_split(policy: str, tmp_path: Path) -> None:
    """About 1.5 s CPU each for pii and secrets: every offset of their labelled sets is 11,000 and 9,000 streams."""
    harness = Harness(tmp_path / "p", POLICIES[policy])
    texts = [(text, True) for text in TEXTS[policy]]
    texts += [(text, False) for text in (dataset_paragraphs(policy) if policy in DATA_SETS else [])]
    failures = []
    for text, more in texts:
        expected = await harness.whole(text)
        for pieces in splits(text, more=more):
            got, _ = await harness.streamed(pieces)
            if got != expected:
                failures.append(
                    f"split {[len(p) for p in pieces][:3]} of {text!r}:\n  got  {got!r}\n  want {expected!r}"
                )
                break  # one failing split per text is enough to read
    assert not failures, "\n".join(failures[:5])


async def test_stream_does_not_commit_a_phone_the_next_chunk_extends(tmp_path: Path) -> None:
    harness = Harness(tmp_path / "p", POLICIES["pii"])
    got, released = await harness.streamed(["Call me on +44 20 7123", " 4567 today."])
    assert got == "Call me on [REDACTED:phone] today." == await harness.whole("Call me on +44 20 7123 4567 today.")
    assert "4567" not in got


async def test_stream_releases_text_once_it_is_a_window_behind(tmp_path: Path) -> None:
    """Time to first token: text without a value is held only until WINDOW + STEP characters have arrived, and
    then released STEP or more characters at a time, never more than WINDOW + STEP characters behind."""
    harness = Harness(tmp_path / "p", POLICIES["pii"])
    text = "word " * 60
    got, released = await harness.streamed([text[i : i + 10] for i in range(0, len(text), 10)])
    assert got == text
    first = next(i for i, piece in enumerate(released) if piece)
    assert first == (WINDOW + STEP) // 10  # the 10-character chunk that brings the held text to 96 or more
    behind = [(i + 1) * 10 - sum(len(p) for p in released[: i + 1]) for i in range(first, len(released))]
    assert max(behind) < WINDOW + STEP + 10 and all(len(p) >= STEP for p in released if p)


async def test_stream_holds_a_long_token_whole_but_lets_compact_json_flow(tmp_path: Path) -> None:
    harness = Harness(tmp_path / "p", POLICIES["secrets"])
    token = "github_pat_" + "Ab1Cd2Ef3Gh4Ij5Kl6Mn7Op8Qr9St0Uv" * 6  # 203 characters, one word
    text = f"the new token is {token} and that is all"
    got, released = await harness.streamed([text[i : i + 10] for i in range(0, len(text), 10)])
    assert got == "the new token is [REDACTED:github_token] and that is all"
    assert "github" not in "".join(released)  # no piece of it left before the stream's end
    compact = orjson.dumps({"rows": [{"id": i, "ok": True} for i in range(40)]}).decode()  # no space in 800 chars
    got, released = await harness.streamed([compact[i : i + 10] for i in range(0, len(compact), 10)])
    assert got == compact
    assert next(i for i, piece in enumerate(released) if piece) <= (WINDOW + STEP + 20) // 10


# ------------------------------------------------------------------ the chunks around the text, decisions, blocks
def chunk(*choices: dict[str, object], **extra: object) -> bytes:
    return event({"id": "s", "model": "m", "choices": list(choices), **extra})


async def test_stream_passes_other_events_through_and_drops_chunks_with_nothing_to_send(tmp_path: Path) -> None:
    harness = Harness(tmp_path / "p", POLICIES["pii"])
    ctx, guard = harness.ctx(), StreamGuard(harness.engine, harness.guardrails)
    comment, usage = b": keep-alive\n\n", chunk(usage={"prompt_tokens": 3, "completion_tokens": 2})
    assert await guard.on_event(ctx, comment) == comment
    role = chunk({"index": 0, "delta": {"role": "assistant"}})
    assert await guard.on_event(ctx, role) == role  # nothing held, and a key besides content: sent as it came
    assert await guard.on_event(ctx, chunk({"index": 0, "delta": {"content": "Mail bob@acme.io"}})) == b""  # held
    assert await guard.on_event(ctx, chunk({"index": 0, "delta": {}})) == b""  # nothing to release, nothing else
    assert await guard.on_event(ctx, usage) == usage
    out = await guard.on_event(ctx, b"data: [DONE]\n\n")
    flush, done = out.split(b"\n\n")[0], out.split(b"\n\n")[1]
    assert orjson.loads(flush[6:]) == {
        "id": "s",
        "model": "m",
        "choices": [{"index": 0, "delta": {"content": "Mail [REDACTED:email]"}}],
    }  # the last chunk's fields, never its usage
    assert done == b"data: [DONE]"
    assert ctx.decisions == [
        {"rule": "pii-out", "policy": "p", "stage": "output", "action": "redact", "kinds": ["email"]}
    ]


async def test_stream_of_several_choices_and_of_completions_text(tmp_path: Path) -> None:
    harness = Harness(tmp_path / "p", POLICIES["pii"])
    ctx, guard = harness.ctx(), StreamGuard(harness.engine, harness.guardrails)
    for piece in ("Mail bob", "@acme.io now"):
        out = await guard.on_event(ctx, chunk({"index": 1, "text": piece}, {"index": 0, "text": piece.upper()}))
        assert out == b""
    last = await guard.on_event(ctx, chunk({"index": 0, "text": "", "finish_reason": "stop"}))
    assert orjson.loads(last[6:])["choices"] == [
        {"index": 0, "text": "MAIL [REDACTED:email] NOW", "finish_reason": "stop"}
    ]
    out = await guard.on_event(ctx, b"data: [DONE]\n\n")
    assert orjson.loads(out.split(b"\n\n")[0][6:])["choices"] == [
        {"index": 1, "delta": {"content": "Mail [REDACTED:email] now"}}
    ]


async def test_stream_records_one_decision_per_rule_however_many_windows_redact(tmp_path: Path) -> None:
    harness = Harness(tmp_path / "p", [guardrail_yaml("pii"), guardrail_yaml("secrets").replace("redact", "warn")])
    text = PAD + "mail bob@acme.io " + PAD + "and eve@acme.io, token ghp_kO7rRu5ykYYqhXHdO2x93CJHLS45gqIO2zVZ " + PAD
    ctx, guard = harness.ctx(), StreamGuard(harness.engine, harness.guardrails)
    got = ""
    for i in range(0, len(text), 7):
        got += content_of(await guard.on_event(ctx, chunk({"index": 0, "delta": {"content": text[i : i + 7]}})))
    got += content_of(await guard.on_event(ctx, b"data: [DONE]\n\n"))
    assert got == text.replace("bob@acme.io", "[REDACTED:email]").replace("eve@acme.io", "[REDACTED:email]")
    assert ctx.decisions == [
        {"rule": "pii-out", "policy": "p", "stage": "output", "action": "redact", "kinds": ["email"]},
        {"rule": "secrets-out", "policy": "p", "stage": "output", "action": "warn", "kinds": ["github_token"]},
    ]


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        (None, "The output was blocked by guardrail pii-out (pii). [rule pii-out; policy set {sha}]"),
        ("No personal data, please.", "No personal data, please. [rule pii-out; policy set {sha}]"),
    ],
)
async def test_stream_block_ends_the_stream_with_the_rules_message(
    tmp_path: Path, message: str | None, expected: str
) -> None:
    rule = {"id": "pii-out", "stage": "output", "check": "pii", "action": "block", "message": message}
    harness = Harness(tmp_path / "p", [orjson.dumps({k: v for k, v in rule.items() if v}).decode()])
    ctx = harness.ctx()
    guard = StreamGuard(harness.engine, harness.engine.guardrails(ctx, "output"))  # as the app: sets ctx's policy set
    assert await guard.on_event(ctx, chunk({"index": 0, "delta": {"content": "Mail bob@acme.io"}})) == b""
    with pytest.raises(PolicyDenied) as blocked:
        await guard.on_event(ctx, chunk({"index": 0, "delta": {}, "finish_reason": "stop"}))
    assert ctx.policy_sha256 and blocked.value.message == expected.format(sha=ctx.policy_sha256[:12])
    with pytest.raises(PolicyDenied) as whole:  # the same answer non-streamed says the same
        await harness.engine.run(harness.ctx(), "output", [({"t": "Mail bob@acme.io"}, "t")])
    assert whole.value.message == blocked.value.message
    assert ctx.decisions == [
        {"rule": "pii-out", "policy": "p", "stage": "output", "action": "block", "kinds": ["email"]}
    ]


async def test_stream_shadow_guardrails_see_the_whole_text_at_the_end(tmp_path: Path) -> None:
    folder = tmp_path / "p"
    folder.mkdir()
    (folder / "a.yaml").write_text(f"name: a\nguardrails:\n  - {guardrail_yaml('pii')}\n")
    (folder / "b.yaml").write_text(
        "name: b\nmode: shadow\nguardrails:\n"
        '  - {"id": "words", "stage": "output", "check": "keywords", "action": "block", '
        '"params": {"words": ["acme merger"]}}\n'
    )
    engine = GuardrailEngine(PolicyStore(str(folder), make_check=build_check))
    ctx = Harness.ctx()
    guard = StreamGuard(engine, engine.guardrails(ctx, "output"))
    pieces = ["The ac", "me mer", "ger is off; mail bob@acme.io"]
    got = ""
    for piece in pieces:
        got += content_of(await guard.on_event(ctx, chunk({"index": 0, "delta": {"content": piece}})))
    got += content_of(await guard.on_event(ctx, b"data: [DONE]\n\n"))
    assert got == "The acme merger is off; mail [REDACTED:email]"  # shadow: reported, not enforced
    assert ctx.decisions == [
        {"rule": "pii-out", "policy": "a", "stage": "output", "action": "redact", "kinds": ["email"]},
        {"rule": "words", "policy": "b", "stage": "output", "action": "block", "kinds": ["keyword"], "shadow": True},
    ]


async def test_stream_holds_96_characters_then_releases_32_at_a_time(tmp_path: Path) -> None:
    """The documented delay in numbers: nothing is sent before 96 characters (WINDOW 64 + STEP 32) have arrived,
    then 32 at a time, each time the held text reaches 96 again."""
    harness = Harness(tmp_path / "p", POLICIES["pii"])
    text = "x " * 100  # a word boundary at every other character: cuts land where the window says
    _, released = await harness.streamed(list(text))
    sent_at = [(i + 1, len(piece)) for i, piece in enumerate(released) if piece]
    assert sent_at[:3] == [(96, 32), (128, 32), (160, 32)]
    # A cut right before a space stays; one inside a word moves back to the word's start (128 -> 31 characters).
    _, released = await harness.streamed(list("ab " * 60))
    assert [(i + 1, len(piece)) for i, piece in enumerate(released) if piece][:3] == [(96, 32), (128, 31), (159, 32)]


async def test_stream_splits_a_word_only_past_4096_held_characters(tmp_path: Path) -> None:
    harness = Harness(tmp_path / "p", POLICIES["pii"])
    text, word = "hello " * 20, "ab" * 2200  # then a word of 4,400 characters: held whole until 4,096 could go
    _, released = await harness.streamed([text, word[:4150], *word[4150:4170]])
    sent = [(i, len(piece)) for i, piece in enumerate(released) if piece]
    assert sent == [(0, 54), (1, 66), (12, 4097)]  # the text up to the word, then 4,097 of it (4,161 held beyond)


@pytest.mark.parametrize("before", ["", "key: "])
async def test_stream_holds_an_unfinished_private_key_block_up_to_16_kb(tmp_path: Path, before: str) -> None:
    harness = Harness(tmp_path / "p", POLICIES["pii"])  # the hold is the guard's, whatever the guardrails find
    block = "-----BEGIN PRIVATE KEY-----\n" + ("MIIEvQIBADANBgkqhkiG9w0BAQEFAASC" * 2 + "\n") * 300
    _, released = await harness.streamed([before + block[:16384], block[16384:16385]])
    assert released[0] == before  # 16,384 characters of the block: held, its END line may still come
    assert released[1].startswith("-----BEGIN PRIVATE KEY-----\nMIIE")  # one more: too long for a key, released


async def test_stream_choices_without_an_index_are_choice_0_and_usage_stays_in_its_own_chunk(tmp_path: Path) -> None:
    harness = Harness(tmp_path / "p", POLICIES["pii"])
    ctx, guard = harness.ctx(), StreamGuard(harness.engine, harness.guardrails)
    assert await guard.on_event(ctx, chunk({"delta": {"content": "Mail bob@acme.io"}})) == b""
    usage = {"prompt_tokens": 3, "completion_tokens": 2}
    assert await guard.on_event(ctx, chunk({"delta": {"content": " now"}}, usage=usage)) == b""
    out = await guard.on_event(ctx, b"data: [DONE]\n\n")
    assert orjson.loads(out.split(b"\n\n")[0][6:]) == {
        "id": "s",
        "model": "m",
        "choices": [{"index": 0, "delta": {"content": "Mail [REDACTED:email] now"}}],
    }


async def test_stream_finish_chunk_of_an_empty_answer_still_reaches_the_client(tmp_path: Path) -> None:
    harness = Harness(tmp_path / "p", POLICIES["pii"])
    ctx, guard = harness.ctx(), StreamGuard(harness.engine, harness.guardrails)
    finish = chunk({"index": 0, "delta": {}, "finish_reason": "content_filter"})
    assert await guard.on_event(ctx, finish) == finish
    assert await guard.on_event(ctx, b"data: [DONE]\n\n") == b"data: [DONE]\n\n"


def apply(text: str, edits: list[tuple[int, int, str]]) -> str:
    for start, end, replacement in sorted(edits, reverse=True):
        text = text[:start] + replacement + text[end:]
    return text


ORIGINAL = "ab 123 cd 4567 ef gh"
EDITS = [(3, 6, "[NUM]"), (10, 14, "[N]")]  # a longer and a shorter replacement


@pytest.mark.parametrize(
    "targets",
    [["gh"], ["cd"], ["ab"], ["b [N"], ["[N] e"], ["M] cd [N"], ["ab", "cd", "gh"], ["[NUM]", "[N]"], ["M", "N]"]],
)
def test_compose_edits_maps_a_later_guardrails_spans_onto_the_original_text(targets: list[str]) -> None:
    """A second guardrail's spans, found in the first one's output, as edits of the original text: applying them
    to the original gives what applying the spans to that output gives, wherever they fall."""
    current = apply(ORIGINAL, EDITS)
    assert current == "ab [NUM] cd [N] ef gh"
    spans = sorted(
        (i, i + len(t), f"<{t}>") for t in targets for i in [current.find(t, current.find(" ") if t == "N]" else 0)]
    )
    assert apply(ORIGINAL, compose_edits(EDITS, spans, current)) == apply(current, spans)
