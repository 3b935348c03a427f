"""The answer to a resume request: the approved calls released as an assistant turn, as JSON or as SSE.

The client sent `"resume_approvals": ["apr_..."]`; the upstream is not called again. The model already asked
for these calls: the gateway hands them over exactly as they were asked for (same call id, same argument
string), in the shape the client would have received them in without the hold.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import orjson

from gateway.errors import InvalidRequest
from gateway.providers.base import DONE_EVENT, Reply
from gateway.storage.tables import ApprovalRequest

FIELD = "resume_approvals"
MAX_RESUMED = 32


def requested_ids(body: dict[str, object]) -> list[str] | None:
    """The approval ids a request resumes (None when it resumes none); raises InvalidRequest for a bad field."""
    value = body.get(FIELD)
    if value is None:
        return None
    if isinstance(value, str):
        value = [value]
    if (
        not isinstance(value, list)
        or not 1 <= len(value) <= MAX_RESUMED
        or not all(isinstance(v, str) and v.startswith("apr_") for v in value)
    ):
        raise InvalidRequest(
            f"{FIELD} must be a list of 1 to {MAX_RESUMED} approval ids (apr_...), as given in the response that "
            "held the calls.",
            param=FIELD,
        )
    if len(set(value)) != len(value):
        raise InvalidRequest(f"{FIELD} names the same approval twice.", param=FIELD)
    return value


def tool_calls(rows: Sequence[ApprovalRequest]) -> list[dict[str, object]]:
    return [
        {"id": row.tool_call_id, "type": "function", "function": {"name": row.tool_name, "arguments": row.arguments}}
        for row in rows
    ]


def released_reply(rows: Sequence[ApprovalRequest], *, request_id: str) -> Reply:
    data: dict[str, object] = {
        "id": f"chatcmpl-{request_id}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": rows[0].model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": None, "tool_calls": tool_calls(rows), "refusal": None},
                "logprobs": None,
                "finish_reason": "tool_calls",
            }
        ],
        "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
        "gateway": {"released_approvals": [row.id for row in rows]},
    }
    return Reply(orjson.dumps(data), data)


def released_events(rows: Sequence[ApprovalRequest], *, request_id: str, include_usage: bool) -> list[bytes]:
    base = {"id": f"chatcmpl-{request_id}", "object": "chat.completion.chunk", "created": int(time.time()),
            "model": rows[0].model}  # fmt: skip
    calls = [{"index": i, **call} for i, call in enumerate(tool_calls(rows))]
    chunks: list[dict[str, object]] = [
        {
            **base,
            "choices": [
                {
                    "index": 0,
                    "delta": {"role": "assistant", "content": None, "tool_calls": calls},
                    "finish_reason": None,
                }
            ],
        },  # fmt: skip
        {
            **base,
            "choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}],
            "gateway": {"released_approvals": [row.id for row in rows]},
        },  # fmt: skip
    ]
    if include_usage:
        chunks.append({**base, "choices": [], "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}})
    return [b"data: " + orjson.dumps(chunk) + b"\n\n" for chunk in chunks] + [DONE_EVENT]
