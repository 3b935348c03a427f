"""The OpenAI-compatible request subset we check: a light parse of the fields the gateway relies on.

Whole bodies are not validated into pydantic models on the hot path: the fields the gateway reads are
checked here, with the same messages and `param` paths OpenAI uses, and everything else (unknown
fields included) is forwarded untouched for the upstream to judge.
"""

from __future__ import annotations

import orjson

from gateway.calls.context import JSONObject
from gateway.errors import InvalidRequest

CHAT_ROLES = frozenset({"system", "developer", "user", "assistant", "tool", "function"})
MAX_N = 128


RESPONSE_FORMAT_TYPES = ("text", "json_object", "json_schema")


def parse_json_body(raw: bytes) -> JSONObject:
    if not raw:
        raise InvalidRequest("The request body is empty; send a JSON object.")
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequest(
            f"We could not parse the JSON body of your request ({exc}). Send valid JSON with "
            "'Content-Type: application/json'."
        ) from None
    if not isinstance(body, dict):
        raise InvalidRequest(f"The request body must be a JSON object, not {json_type(body)}.")
    return body


def json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


def invalid_type(param: str, value: object, expected: str) -> InvalidRequest:
    return InvalidRequest(f"Invalid type for '{param}': expected {expected}, but got {json_type(value)}.", param=param)


def require_model(body: JSONObject) -> str:
    model = body.get("model")
    if model is None:
        raise InvalidRequest("Missing required parameter: 'model'.", param="model")
    if not isinstance(model, str) or not model:
        raise invalid_type("model", model, "a non-empty string")
    return model


def check_stream(body: JSONObject) -> bool:
    stream = body.get("stream", False)
    if stream is None:
        stream = False
    if not isinstance(stream, bool):
        raise invalid_type("stream", stream, "a boolean")
    options = body.get("stream_options")
    if options is not None:
        if not stream:
            raise InvalidRequest(
                "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
                param="stream_options",
            )
        if not isinstance(options, dict):
            raise invalid_type("stream_options", options, "an object")
    return stream


def check_int(body: JSONObject, name: str, *, low: int, high: int | None = None) -> None:
    value = body.get(name)
    if value is None:
        return
    if not isinstance(value, int) or isinstance(value, bool):
        raise invalid_type(name, value, "an integer")
    if value < low or (high is not None and value > high):
        bound = f"between {low} and {high}" if high is not None else f"at least {low}"
        raise InvalidRequest(f"Invalid value for '{name}': {value}; it must be {bound}.", param=name)


def check_number(body: JSONObject, name: str, *, low: float, high: float) -> None:
    value = body.get(name)
    if value is None:
        return
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise invalid_type(name, value, "a number")
    if not low <= value <= high:
        raise InvalidRequest(f"Invalid value for '{name}': {value}; it must be between {low} and {high}.", param=name)


def check_sampling(body: JSONObject) -> None:
    check_int(body, "n", low=1, high=MAX_N)
    check_int(body, "max_tokens", low=1)
    check_int(body, "max_completion_tokens", low=1)
    check_number(body, "temperature", low=0, high=2)
    check_number(body, "top_p", low=0, high=1)


def check_chat(body: JSONObject) -> tuple[str, bool]:
    """Checks a chat completion request; returns (model, stream). Raises InvalidRequest naming the param."""
    model = require_model(body)
    messages = body.get("messages")
    if messages is None:
        raise InvalidRequest("Missing required parameter: 'messages'.", param="messages")
    if not isinstance(messages, list):
        raise invalid_type("messages", messages, "an array of message objects")
    if not messages and not names_prompt(body, model):
        raise InvalidRequest(
            "Invalid 'messages': empty array. Expected an array with minimum length 1.", param="messages"
        )
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            raise invalid_type(f"messages[{i}]", message, "an object")
        role = message.get("role")
        if role not in CHAT_ROLES:
            if role is None:
                raise InvalidRequest(f"Missing required parameter: 'messages[{i}].role'.", param=f"messages[{i}].role")
            raise InvalidRequest(
                f"Invalid value for 'messages[{i}].role': {role!r}; expected one of {', '.join(sorted(CHAT_ROLES))}.",
                param=f"messages[{i}].role",
            )
        content = message.get("content")
        if content is not None and not isinstance(content, (str, list)):
            raise invalid_type(f"messages[{i}].content", content, "a string or an array of content parts")
    tools = body.get("tools")
    if tools is not None and not isinstance(tools, list):
        raise invalid_type("tools", tools, "an array of tool objects")
    response_format = body.get("response_format")
    if response_format is not None:
        check_response_format(response_format)
    check_sampling(body)
    return model, check_stream(body)


def check_response_format(value: object) -> None:
    """OpenAI's three kinds: text, json_object, json_schema (which names its schema in `json_schema`)."""
    if not isinstance(value, dict):
        raise invalid_type("response_format", value, "an object with a type")
    kind = value.get("type")
    if kind not in RESPONSE_FORMAT_TYPES:
        raise InvalidRequest(
            f"Invalid value for 'response_format.type': {kind!r}; expected one of {', '.join(RESPONSE_FORMAT_TYPES)}.",
            param="response_format.type",
        )
    if kind == "json_schema" and not isinstance(value.get("json_schema"), dict):
        raise invalid_type("response_format.json_schema", value.get("json_schema"), "an object: {name, schema}")


def names_prompt(body: JSONObject, model: str) -> bool:
    """A request rendered from a registry prompt may send no messages of its own (gateway/prompts/hook.py)."""
    return "prompt" in body or model.startswith("prompt:")


def check_completion(body: JSONObject) -> tuple[str, bool]:
    """Checks a legacy completion request; returns (model, stream)."""
    model = require_model(body)
    prompt = body.get("prompt")
    if prompt is None:
        raise InvalidRequest("Missing required parameter: 'prompt'.", param="prompt")
    if not isinstance(prompt, (str, list)):
        raise invalid_type("prompt", prompt, "a string, an array of strings or an array of tokens")
    check_sampling(body)
    return model, check_stream(body)


def check_embedding(body: JSONObject) -> str:
    """Checks an embeddings request; returns the model."""
    model = require_model(body)
    data = body.get("input")
    if data is None:
        raise InvalidRequest("Missing required parameter: 'input'.", param="input")
    if isinstance(data, str):
        if not data:
            raise InvalidRequest("Invalid 'input': empty string.", param="input")
    elif isinstance(data, list):
        if not data:
            raise InvalidRequest("Invalid 'input': empty array. Expected at least one item.", param="input")
        for i, item in enumerate(data):
            if not isinstance(item, (str, int, list)) or isinstance(item, bool):
                raise invalid_type(f"input[{i}]", item, "a string, a token or an array of tokens")
    else:
        raise invalid_type("input", data, "a string or an array")
    check_int(body, "dimensions", low=1)
    fmt = body.get("encoding_format")
    if fmt is not None and fmt not in ("float", "base64"):
        raise InvalidRequest(
            f"Invalid value for 'encoding_format': {fmt!r}; expected 'float' or 'base64'.",
            param="encoding_format",
        )
    if body.get("stream"):
        raise InvalidRequest("Embeddings cannot be streamed.", param="stream")
    return model
