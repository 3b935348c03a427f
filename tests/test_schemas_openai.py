"""The light request check: what it refuses, with OpenAI's messages and param paths."""

from __future__ import annotations

import httpx
import pytest

from gateway.errors import InvalidRequest
from gateway.schemas.openai import check_chat, check_completion, check_embedding, parse_json_body
from tests.conftest import AUTH
from tests.fake_upstream import FakeUpstream

USER = [{"role": "user", "content": "hi"}]


@pytest.mark.parametrize(
    ("body", "param", "fragment"),
    [
        ({"messages": USER}, "model", "Missing required parameter: 'model'"),
        ({"model": 3, "messages": USER}, "model", "expected a non-empty string"),
        ({"model": "m"}, "messages", "Missing required parameter: 'messages'"),
        ({"model": "m", "messages": "hi"}, "messages", "expected an array"),
        ({"model": "m", "messages": []}, "messages", "empty array"),
        ({"model": "m", "messages": [3]}, "messages[0]", "expected an object"),
        ({"model": "m", "messages": [{"content": "x"}]}, "messages[0].role", "Missing required"),
        ({"model": "m", "messages": [{"role": "robot", "content": "x"}]}, "messages[0].role", "'robot'"),
        ({"model": "m", "messages": [{"role": "user", "content": 5}]}, "messages[0].content", "a string or"),
        ({"model": "m", "messages": USER, "n": 0}, "n", "between 1 and 128"),
        ({"model": "m", "messages": USER, "n": 129}, "n", "between 1 and 128"),
        ({"model": "m", "messages": USER, "n": "2"}, "n", "expected an integer"),
        ({"model": "m", "messages": USER, "n": True}, "n", "expected an integer"),
        ({"model": "m", "messages": USER, "temperature": 3}, "temperature", "between 0 and 2"),
        ({"model": "m", "messages": USER, "max_tokens": 0}, "max_tokens", "at least 1"),
        ({"model": "m", "messages": USER, "stream": "yes"}, "stream", "expected a boolean"),
        (
            {"model": "m", "messages": USER, "stream_options": {"include_usage": True}},
            "stream_options",
            "only allowed",
        ),
        ({"model": "m", "messages": USER, "tools": {}}, "tools", "array of tool"),
        ({"model": "m", "messages": USER, "response_format": {"type": "xml"}}, "response_format.type",
         "'xml'; expected one of text, json_object, json_schema"),
        ({"model": "m", "messages": USER, "response_format": {}}, "response_format.type", "None; expected one of"),
        ({"model": "m", "messages": USER, "response_format": "json"}, "response_format", "an object with a type"),
        ({"model": "m", "messages": USER, "response_format": {"type": "json_schema"}}, "response_format.json_schema",
         "an object: {name, schema}"),
    ],
)  # fmt: skip
def test_check_chat_refuses_with_param(body: dict[str, object], param: str, fragment: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        check_chat(body)
    assert caught.value.param == param
    assert fragment in caught.value.message


def test_check_chat_accepts_and_keeps_unknown_fields() -> None:
    body = {
        "model": "m",
        "messages": USER,
        "stream": True,
        "stream_options": {"include_usage": True},
        "x_custom": 1,
    }
    assert check_chat(body) == ("m", True)
    assert body["x_custom"] == 1


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"model": "m"}, "input"),
        ({"model": "m", "input": ""}, "input"),
        ({"model": "m", "input": []}, "input"),
        ({"model": "m", "input": {"a": 1}}, "input"),
        ({"model": "m", "input": [None]}, "input[0]"),
        ({"model": "m", "input": "x", "dimensions": 0}, "dimensions"),
        ({"model": "m", "input": "x", "encoding_format": "int8"}, "encoding_format"),
    ],
)
def test_check_embedding_refuses_with_param(body: dict[str, object], param: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        check_embedding(body)
    assert caught.value.param == param


def test_check_completion_needs_prompt() -> None:
    with pytest.raises(InvalidRequest) as caught:
        check_completion({"model": "m"})
    assert caught.value.param == "prompt"
    assert check_completion({"model": "m", "prompt": ["a", "b"]}) == ("m", False)


@pytest.mark.parametrize(("raw", "fragment"), [(b"", "empty"), (b"{nope", "could not parse"), (b"[1]", "not an array")])
def test_parse_json_body_refuses_non_objects(raw: bytes, fragment: str) -> None:
    with pytest.raises(InvalidRequest, match=fragment):
        parse_json_body(raw)


async def test_chat_with_an_unknown_response_format_is_a_400_and_nothing_goes_upstream(
    client: httpx.AsyncClient, upstream: FakeUpstream
) -> None:
    body = {"model": "gpt-test", "messages": USER, "response_format": {"type": "xml"}}
    r = await client.post("/v1/chat/completions", headers=AUTH, json=body)
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["type"] == "invalid_request_error" and error["param"] == "response_format.type"
    assert "text, json_object, json_schema" in error["message"]
    assert upstream.requests == []
    body["response_format"] = {"type": "json_object"}
    assert (await client.post("/v1/chat/completions", headers=AUTH, json=body)).status_code == 200
