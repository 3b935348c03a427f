"""Every GatewayError renders as OpenAI-shaped JSON with its status."""

from __future__ import annotations

import orjson
import pytest

from gateway import errors


def all_subclasses(cls: type) -> list[type]:
    found = []
    for sub in cls.__subclasses__():
        found += [sub, *all_subclasses(sub)]
    return found


@pytest.mark.parametrize("cls", all_subclasses(errors.GatewayError), ids=lambda c: c.__name__)
def test_every_error_class_renders_openai_shape(cls: type[errors.GatewayError]) -> None:
    error = cls("what went wrong", param="messages")
    response = errors.error_response(error, "req_1")
    assert 400 <= response.status_code < 600
    body = orjson.loads(response.body)
    assert body == {"error": {"message": "what went wrong", "type": cls.type, "param": "messages", "code": cls.code}}
    assert response.headers["x-request-id"] == "req_1"


def test_sse_error_event_is_one_data_event() -> None:
    event = errors.sse_error_event(errors.UpstreamError("boom"))
    assert event.startswith(b"data: {") and event.endswith(b"\n\n")
    assert orjson.loads(event[6:])["error"]["code"] == "provider_error"
