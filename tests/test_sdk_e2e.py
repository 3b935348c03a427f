"""The official openai SDK, unchanged, against `gateway serve` running for real on 127.0.0.1."""

from __future__ import annotations

import json
from collections.abc import Iterator

import openai
import pytest

from tests.conftest import MASTER_KEY
from tests.fake_upstream import FakeUpstream
from tests.servers import ServedGateway


@pytest.fixture(scope="module")
def gateway_url(tmp_path_factory: pytest.TempPathFactory, upstream_server: FakeUpstream) -> Iterator[str]:
    """Starts the real server once for this module (about 1 s) and stops it afterwards."""
    folder = tmp_path_factory.mktemp("served")
    config = folder / "gateway.yaml"
    config.write_text(
        f"""
models:
  - name: gpt-test
    model: openai/gpt-4o-mini
    api_base: {upstream_server.base_url}
    api_key: ${{UPSTREAM_KEY}}
  - name: embed-test
    model: openai/text-embedding-3-small
    api_base: {upstream_server.base_url}
database_url: sqlite:///{folder / "gateway.db"}
spool_dir: {folder / "spool"}
"""
    )
    server = ServedGateway(config, env={"UPSTREAM_KEY": "sk-up"}).start()
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture
def sdk(gateway_url: str, upstream_server: FakeUpstream) -> openai.OpenAI:
    upstream_server.reset()
    return openai.OpenAI(base_url=f"{gateway_url}/v1", api_key=MASTER_KEY, max_retries=0)


def test_sdk_lists_models(sdk: openai.OpenAI) -> None:
    assert {m.id for m in sdk.models.list()} == {"gpt-test", "embed-test"}


def test_sdk_chat_non_stream(sdk: openai.OpenAI, upstream_server: FakeUpstream) -> None:
    response = sdk.chat.completions.create(
        model="gpt-test", messages=[{"role": "user", "content": "hi there"}], seed=1, n=2, logprobs=True
    )
    assert [c.message.content for c in response.choices] == ["hi there", "hi there"]
    assert response.usage is not None and response.usage.completion_tokens > 0
    assert upstream_server.last.headers["authorization"] == "Bearer sk-up"
    assert upstream_server.last.body is not None and upstream_server.last.body["seed"] == 1


def test_sdk_chat_stream_with_usage(sdk: openai.OpenAI) -> None:
    stream = sdk.chat.completions.create(
        model="gpt-test",
        messages=[{"role": "user", "content": "stream me please"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "stream me please"
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 3


def test_sdk_tools_and_response_format(sdk: openai.OpenAI, upstream_server: FakeUpstream) -> None:
    tools = [
        {
            "type": "function",
            "function": {"name": "lookup", "parameters": {"type": "object", "properties": {}}},
        }
    ]
    response = sdk.chat.completions.create(
        model="gpt-test",
        messages=[{"role": "user", "content": "find it"}],
        tools=tools,  # type: ignore[arg-type]
        tool_choice={"type": "function", "function": {"name": "lookup"}},
        response_format={"type": "json_object"},
    )
    call = response.choices[0].message.tool_calls[0]  # type: ignore[index]
    assert call.function.name == "lookup" and json.loads(call.function.arguments) == {}
    assert upstream_server.last.body is not None
    assert upstream_server.last.body["response_format"] == {"type": "json_object"}


def test_sdk_embeddings_and_completions(sdk: openai.OpenAI) -> None:
    embedding = sdk.embeddings.create(model="embed-test", input=["alpha", "beta"])  # base64 on the wire
    assert len(embedding.data) == 2 and len(embedding.data[0].embedding) == 8
    completion = sdk.completions.create(model="gpt-test", prompt="echo this")
    assert completion.choices[0].text == "echo this"


def test_sdk_error_classes(sdk: openai.OpenAI, gateway_url: str) -> None:
    with pytest.raises(openai.NotFoundError) as not_found:
        sdk.chat.completions.create(model="missing", messages=[{"role": "user", "content": "x"}])
    assert not_found.value.code == "model_not_found"
    with pytest.raises(openai.BadRequestError) as bad:
        sdk.chat.completions.create(model="gpt-test", messages=[])
    assert bad.value.param == "messages"
    wrong = openai.OpenAI(base_url=f"{gateway_url}/v1", api_key="sk-wrong-key-12345", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        wrong.models.list()
