"""Token counts against OpenAI's published numbers, hand-counted framing, and the offline tokenizer files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.usage import tokens
from gateway.usage.tokens import (
    ENCODING_FILES,
    IMAGE_TOKENS_HIGH,
    IMAGE_TOKENS_LOW,
    TokenCounter,
    encoding_name,
    load_encoding,
    tokenizer_dir,
)

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def counter() -> TokenCounter:
    return TokenCounter()


def user(content: object, **extra: object) -> dict[str, object]:
    return {"role": "user", "content": content, **extra}


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        ("gpt-4o", "o200k_base"),
        ("gpt-4o-mini-2024-07-18", "o200k_base"),
        ("gpt-4.1-nano", "o200k_base"),
        ("gpt-5", "o200k_base"),
        ("o1-mini", "o200k_base"),
        ("o3", "o200k_base"),
        ("o4-mini", "o200k_base"),
        ("chatgpt-4o-latest", "o200k_base"),
        ("openai/gpt-4o", "o200k_base"),  # an upstream name routed through e.g. OpenRouter
        ("gpt-4", "cl100k_base"),
        ("gpt-4-turbo", "cl100k_base"),
        ("gpt-3.5-turbo", "cl100k_base"),
        ("text-embedding-3-small", "cl100k_base"),
        ("claude-haiku-4-5", "cl100k_base"),  # approximation for non-OpenAI tokenizers
        ("llama3.1:8b", "cl100k_base"),
    ],
)
def test_encoding_name_by_model_family(model: str, expected: str) -> None:
    assert encoding_name(model) == expected


@pytest.mark.parametrize("model", ["gpt-3.5-turbo", "gpt-4o"])  # cl100k_base and o200k_base
def test_hello_world_is_two_tokens(counter: TokenCounter, model: str) -> None:
    assert counter.count_text(model, "hello world") == 2
    assert counter.count_text(model, "") == 0


# The OpenAI cookbook "How to count tokens with tiktoken": these messages cost 129 prompt tokens on
# gpt-3.5-turbo and gpt-4 and 124 on gpt-4o and gpt-4o-mini, as reported by the OpenAI API itself.
COOKBOOK_MESSAGES = [
    {
        "role": "system",
        "content": "You are a helpful, pattern-following assistant that translates corporate jargon"
        " into plain English.",
    },
    {"role": "system", "name": "example_user", "content": "New synergies will help drive top-line growth."},
    {"role": "system", "name": "example_assistant", "content": "Things working well together will increase revenue."},
    {
        "role": "system",
        "name": "example_user",
        "content": "Let's circle back when we have more bandwidth to touch base on opportunities"
        " for increased leverage.",
    },
    {
        "role": "system",
        "name": "example_assistant",
        "content": "Let's talk later when we're less busy about how to do better.",
    },
    {
        "role": "user",
        "content": "This late pivot means we don't have time to boil the ocean for the client deliverable.",
    },
]


@pytest.mark.parametrize(
    ("model", "api_count"), [("gpt-3.5-turbo", 129), ("gpt-4", 129), ("gpt-4o", 124), ("gpt-4o-mini", 124)]
)
def test_chat_matches_openai_cookbook(counter: TokenCounter, model: str, api_count: int) -> None:
    assert counter.count_chat(model, {"model": model, "messages": COOKBOOK_MESSAGES}) == api_count


# Hand-counted: 3 reply priming + per message 3 framing + role ("user", "tool", "assistant": 1 token each)
# + content ("hello world": 2 tokens, "hello": 1) + a name's tokens and 1 more.
@pytest.mark.parametrize(
    ("messages", "expected"),
    [
        ([], 3),
        ([user("hello world")], 3 + 3 + 1 + 2),
        ([user("hello world", name="hello")], 3 + 3 + 1 + 2 + 1 + 1),
        ([user("hello world"), user("hello")], 3 + (3 + 1 + 2) + (3 + 1 + 1)),
        ([user([{"type": "text", "text": "hello world"}])], 9),
        ([user(["hello world"])], 9),  # a bare string part, as some clients send
        ([user([{"type": "text", "text": "hello"}, {"type": "text", "text": " world"}])], 9),
        (
            [user([{"type": "image_url", "image_url": {"url": "https://x/a.png", "detail": "low"}}])],
            7 + IMAGE_TOKENS_LOW,
        ),
        ([user([{"type": "image_url", "image_url": {"url": "https://x/a.png", "detail": "high"}}])], 7 + 765),
        ([user([{"type": "image_url", "image_url": {"url": "https://x/a.png"}}])], 7 + IMAGE_TOKENS_HIGH),
        ([user([{"type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav"}}])], 7),
        ([user(None)], 7),
        (
            [
                {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {"id": "call_1", "type": "function", "function": {"name": "hello", "arguments": "hello world"}}
                    ],
                }
            ],
            3 + 3 + 1 + (1 + 2),
        ),
        ([{"role": "assistant", "function_call": {"name": "hello", "arguments": "hello"}}], 3 + 3 + 1 + 2),
        ([{"role": "tool", "tool_call_id": "call_1", "content": "hello world"}], 3 + 3 + 1 + 2),
        (["not a message", 42], 3),
    ],
)
@pytest.mark.parametrize("model", ["gpt-4", "gpt-4o-mini"])
def test_chat_counts_by_hand(counter: TokenCounter, model: str, messages: list[object], expected: int) -> None:
    assert counter.count_chat(model, {"messages": messages}) == expected


@pytest.mark.parametrize("body", [{}, {"messages": "hello"}, {"messages": None}])
def test_chat_without_a_message_list_is_only_the_reply_priming(counter: TokenCounter, body: dict[str, object]) -> None:
    assert counter.count_chat("gpt-4o", body) == 3


WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_current_weather",
        "description": "Get the current weather in a given location",
        "parameters": {
            "type": "object",
            "properties": {
                "location": {"type": "string", "description": "The city and state, e.g. San Francisco, CA"},
                "unit": {
                    "type": "string",
                    "description": "The unit of temperature to return",
                    "enum": ["celsius", "fahrenheit"],
                },
            },
            "required": ["location"],
        },
    },
}
WEATHER_MESSAGES = [
    {"role": "system", "content": "You are a helpful assistant that can answer to questions about the weather."},
    {"role": "user", "content": "What's the weather like in San Francisco?"},
]


@pytest.mark.parametrize(("model", "api_count"), [("gpt-4", 105), ("gpt-4o-mini", 101)])
@pytest.mark.parametrize("key", ["tools", "functions"])
def test_tool_definitions_never_undercount_the_cookbook_example(
    counter: TokenCounter, model: str, api_count: int, key: str
) -> None:
    # The cookbook's tools example costs 105 (gpt-4) and 101 (gpt-4o-mini) prompt tokens at the API.
    # Compact JSON over-counts OpenAI's internal rendering a little, which is the safe side for budgets.
    tools = [WEATHER_TOOL] if key == "tools" else [WEATHER_TOOL["function"]]
    count = counter.count_chat(model, {"messages": WEATHER_MESSAGES, key: tools})
    assert api_count <= count <= api_count * 1.25


@pytest.mark.parametrize(
    ("prompt", "expected"),
    [
        ("hello world", 2),
        (["hello world", "hello"], 3),
        ([15339, 1917, 0], 3),  # token ids count as themselves
        ([[15339, 1917], [15339]], 3),
        ([], 0),
        ("", 0),
        (None, 0),
    ],
)
@pytest.mark.parametrize("model", ["gpt-3.5-turbo-instruct", "text-embedding-3-small", "gpt-4o"])
def test_completion_prompt_and_embedding_input(
    counter: TokenCounter, model: str, prompt: object, expected: int
) -> None:
    assert counter.count_completion_prompt(model, prompt) == expected  # type: ignore[arg-type]
    assert counter.count_embedding_input(model, prompt) == expected  # type: ignore[arg-type]


def test_encodings_are_cached_per_name(counter: TokenCounter) -> None:
    assert counter.encoding_for("gpt-4o") is counter.encoding_for("gpt-5-mini")
    assert counter.encoding_for("gpt-4") is counter.encoding_for("claude-haiku-4-5")
    assert counter.encoding_for("gpt-4").name == "cl100k_base"


def test_litellm_ships_the_tiktoken_files_we_rely_on() -> None:
    # Named as in tiktoken's cache (sha1 of the download URL); a litellm upgrade that drops these breaks offline use.
    assert (tokenizer_dir() / "9b5ad71b2ce5302211f9c61530b329a4922fc6a4").is_file()  # cl100k_base
    assert (tokenizer_dir() / "fb374d419588a4632f3f557e76b4b70aebbca790").is_file()  # o200k_base
    sizes = {name: len(load_encoding(name)) for name in ENCODING_FILES}
    assert sizes == {"cl100k_base": 100_256, "o200k_base": 199_998}


def test_a_vocabulary_file_that_is_not_tiktokens_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    file, _ = ENCODING_FILES["cl100k_base"]
    original = (tokenizer_dir() / file).read_bytes()
    (tmp_path / file).write_bytes(original.replace(b"IQ== 0", b"Ig== 0", 1))  # token 0 changed from "!" to '"'
    monkeypatch.setattr(tokens, "tokenizer_dir", lambda: tmp_path)
    with pytest.raises(RuntimeError, match=r"is not tiktoken's cl100k_base file \(sha256 differs\)"):
        load_encoding("cl100k_base")


SCRIPT = """
import json, sys
from gateway.config import ModelConfig
from gateway.calls.context import Usage
from gateway.usage.pricing import PriceTable
from gateway.usage.tokens import TokenCounter

counter = TokenCounter()
model = ModelConfig(name="m", model="openai/gpt-4o-mini")
table = PriceTable([model])
print(json.dumps({
    "o200k": counter.count_text("gpt-4o", "hello world"),
    "cl100k": counter.count_text("gpt-4", "hello world"),
    "cost": table.cost(model, Usage(1_000_000, 0)),
    "litellm_imported": any(name == "litellm" or name.startswith("litellm.") for name in sys.modules),
    "tiktoken_imported": "tiktoken" in sys.modules,
}))
"""


def test_offline_and_without_importing_litellm() -> None:
    # A fresh interpreter (other tests import litellm and tiktoken in-process) with no tiktoken cache setting and
    # every HTTP(S) request sent to a closed port: any download attempt fails. About 1 s: interpreter and imports.
    env = {k: v for k, v in os.environ.items() if k != "TIKTOKEN_CACHE_DIR" and not k.lower().endswith("_proxy")}
    env |= {"HTTPS_PROXY": "http://127.0.0.1:9", "HTTP_PROXY": "http://127.0.0.1:9", "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {
        "o200k": 2,
        "cl100k": 2,
        "cost": 150_000_000,
        "litellm_imported": False,
        "tiktoken_imported": False,
    }
