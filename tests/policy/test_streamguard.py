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
from gateway.policy.guardrails import GuardrailEngine
from gateway.policy.store import PolicyStore
from gateway.policy.streamguard import STEP, WINDOW, StreamGuard

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
