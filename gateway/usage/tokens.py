"""Counts tokens offline: tiktoken's vocabularies, from the files litellm ships, counted by `gateway.usage._bpe`.

The counts are tiktoken's (`len(encoding.encode_ordinary(text))`, checked against tiktoken itself by
tests/usage/test_bpe.py); the C counter holds o200k_base in 4 MB where tiktoken's Rust core takes 46 MB, and counts
4-13x faster on prose and code, 1.2x on CJK (bench/RESULTS.md).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import orjson

from gateway.usage import litellm_package_dir
from gateway.usage._bpe import Vocabulary

# OpenAI's chat format, as counted in the OpenAI cookbook ("How to count tokens with tiktoken"): every
# message costs 3 tokens of framing, a `name` one more, and the reply is primed with 3 tokens.
TOKENS_PER_MESSAGE = 3
TOKENS_PER_NAME = 1
REPLY_PRIMING = 3
# Images are not tokenised as text. OpenAI bills a low-detail image at 85 tokens and a high-detail one
# at 85 + 170 per 512 px tile; 765 is a 1024x1024 image (4 tiles), the size most clients send.
IMAGE_TOKENS_LOW = 85
IMAGE_TOKENS_HIGH = 765

# Model name prefixes that use o200k_base; everything else uses cl100k_base (below).
O200K_PREFIXES = ("gpt-4o", "gpt-4.1", "gpt-4.5", "gpt-5", "o1", "o3", "o4", "chatgpt-4o", "gpt-oss", "codex-")

# Each encoding's file in litellm's folder (named, as in tiktoken's cache, by the sha1 of its download URL) and
# the sha256 tiktoken checks its content against (tiktoken_ext/openai_public.py).
ENCODING_FILES = {
    "cl100k_base": (
        "9b5ad71b2ce5302211f9c61530b329a4922fc6a4",
        "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7",
    ),
    "o200k_base": (
        "fb374d419588a4632f3f557e76b4b70aebbca790",
        "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d",
    ),
}

CompletionPrompt = str | Sequence[str] | Sequence[int] | Sequence[Sequence[int]]
_Count = Callable[[str], int]


def tokenizer_dir() -> Path:
    """litellm's folder of tiktoken files."""
    return litellm_package_dir() / "litellm_core_utils" / "tokenizers"


def encoding_name(upstream_model: str) -> str:
    """The tiktoken encoding for a model: o200k_base for the GPT-4o/4.1/5 and o-series families, else cl100k_base.

    Non-OpenAI models (Claude, Gemini, Llama...) use their own tokenizers; cl100k_base is the approximation
    we reserve budgets with, and the provider's reported usage settles the real cost afterwards.
    """
    bare = upstream_model.rpartition("/")[2].lower()  # "openai/gpt-4o" as routed through OpenRouter
    return "o200k_base" if bare.startswith(O200K_PREFIXES) else "cl100k_base"


def load_encoding(name: str) -> Vocabulary:
    """The vocabulary of `name` (a key of ENCODING_FILES), read from litellm's file after checking its sha256."""
    file, sha256 = ENCODING_FILES[name]
    path = tokenizer_dir() / file
    data = path.read_bytes()
    if hashlib.sha256(data).hexdigest() != sha256:
        raise RuntimeError(f"{path} is not tiktoken's {name} file (sha256 differs); reinstall litellm")
    return Vocabulary(data, name)


class TokenCounter:
    """Counts prompt tokens per request kind; encodings load once, on first use, and are cached."""

    _MAX_MODELS = 1024  # bound on the per-model cache, in case callers pass client-chosen names

    def __init__(self) -> None:
        self._encodings: dict[str, Vocabulary] = {}
        self._by_model: dict[str, Vocabulary] = {}

    def encoding_for(self, upstream_model: str) -> Vocabulary:
        encoding = self._by_model.get(upstream_model)
        if encoding is None:
            name = encoding_name(upstream_model)
            encoding = self._encodings.get(name)
            if encoding is None:
                encoding = self._encodings[name] = load_encoding(name)
            if len(self._by_model) < self._MAX_MODELS:
                self._by_model[upstream_model] = encoding
        return encoding

    def count_text(self, upstream_model: str, text: str) -> int:
        return self.encoding_for(upstream_model).count(text)

    def count_chat(self, upstream_model: str, body: Mapping[str, object]) -> int:
        """Prompt tokens of a chat completion request: messages, their framing, and tool definitions.

        Exact for text messages on OpenAI models (the cookbook's formula, which matches the API's count). Tool
        definitions count as their compact JSON, slightly more than OpenAI's rendering (105-119% on the cookbook
        example): the safe side for a reservation. Audio and file parts, and shapes not recognised, count 0.
        """
        count = self.encoding_for(upstream_model).count
        total = REPLY_PRIMING
        messages = body.get("messages")
        if isinstance(messages, list):
            for message in messages:
                if isinstance(message, dict):
                    total += TOKENS_PER_MESSAGE + _message_tokens(count, message)
        tools = body.get("tools") or body.get("functions")
        if tools:
            total += _json_tokens(count, tools)
        return total

    def count_completion_prompt(self, upstream_model: str, prompt: CompletionPrompt) -> int:
        """Tokens of a /v1/completions `prompt`: a string, strings, token ids, or lists of token ids."""
        return self._count_inputs(upstream_model, prompt)

    def count_embedding_input(self, upstream_model: str, input: CompletionPrompt) -> int:
        """Tokens of a /v1/embeddings `input`; it takes the same four shapes as a completion prompt."""
        return self._count_inputs(upstream_model, input)

    def _count_inputs(self, upstream_model: str, value: object) -> int:
        if isinstance(value, str):
            return self.count_text(upstream_model, value)
        if not isinstance(value, list) or not value:
            return 0
        if isinstance(value[0], int):
            return len(value)  # already token ids
        total = 0
        count = None
        for item in value:
            if isinstance(item, str):
                count = count or self.encoding_for(upstream_model).count
                total += count(item)
            elif isinstance(item, list):
                total += len(item)
        return total


def _message_tokens(count: _Count, message: dict[str, object]) -> int:
    tokens = 0
    role = message.get("role")
    if isinstance(role, str):
        tokens += count(role)
    name = message.get("name")
    if isinstance(name, str):
        tokens += count(name) + TOKENS_PER_NAME
    content = message.get("content")
    if isinstance(content, str):
        tokens += count(content)
    elif isinstance(content, list):
        tokens += _parts_tokens(count, content)
    tool_calls = message.get("tool_calls")
    if isinstance(tool_calls, list):
        for call in tool_calls:
            if isinstance(call, dict):
                tokens += _function_tokens(count, call.get("function"))
    function_call = message.get("function_call")  # the legacy, pre-`tools` shape
    if function_call is not None:
        tokens += _function_tokens(count, function_call)
    return tokens


def _parts_tokens(count: _Count, parts: list[object]) -> int:
    tokens = 0
    for part in parts:
        if isinstance(part, str):
            tokens += count(part)
        elif isinstance(part, dict):
            kind = part.get("type")
            if kind == "text" or kind == "input_text":
                text = part.get("text")
                tokens += count(text) if isinstance(text, str) else 0
            elif kind == "image_url":
                image = part.get("image_url")
                low = isinstance(image, dict) and image.get("detail") == "low"
                tokens += IMAGE_TOKENS_LOW if low else IMAGE_TOKENS_HIGH
            elif kind == "refusal":
                refusal = part.get("refusal")
                tokens += count(refusal) if isinstance(refusal, str) else 0
    return tokens


def _function_tokens(count: _Count, function: object) -> int:
    if not isinstance(function, dict):
        return 0
    tokens = 0
    for field in ("name", "arguments"):
        value = function.get(field)
        if isinstance(value, str):
            tokens += count(value)
    return tokens


def _json_tokens(count: _Count, value: object) -> int:
    try:
        text = orjson.dumps(value).decode()
    except orjson.JSONEncodeError:  # not JSON-shaped (schemas validate bodies before this); count nothing
        return 0
    return count(text)
