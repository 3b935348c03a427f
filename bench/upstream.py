"""A very fast fake OpenAI-compatible upstream for benchmarks: a raw asyncio HTTP/1.1 keep-alive server.

`python bench/upstream.py --port 9100 [--delay-ms 0] [--chunk-delay-ms 0]`

POST .../chat/completions answers a chat completion with usage; with `"stream": true` it sends 10 content
chunks, a finish chunk, a usage chunk if `stream_options.include_usage` is true, then `data: [DONE]`.
GET .../models and GET /health answer too; anything else is a 404. Bodies are chunk-encoded for streams
and sized with content-length otherwise. Chosen over aiohttp's low-level server by measurement (see
bench/RESULTS.md): it must never be the bottleneck of a benchmark it serves.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import signal
import time

try:
    import orjson

    loads = orjson.loads
    dumps = orjson.dumps
except ImportError:  # the LiteLLM venv or a bare interpreter: still works, a little slower
    loads = json.loads

    def dumps(value: object) -> bytes:
        return json.dumps(value, separators=(",", ":")).encode()


STREAM_CHUNKS = 10
WORDS = ("Hello", " from", " the", " fake", " upstream", ",", " a", " benchmark", " reply", ".")
CONTENT = "".join(WORDS)
PROMPT_TOKENS = 12
COMPLETION_TOKENS = STREAM_CHUNKS
MAX_HEADER_BYTES = 64 * 1024
_ids = itertools.count(1)


def completion(model: str) -> bytes:
    return dumps(
        {
            "id": f"chatcmpl-bench{next(_ids)}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "system_fingerprint": "fp_bench",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": CONTENT, "refusal": None},
                    "logprobs": None,
                    "finish_reason": "stop",
                }
            ],
            "usage": usage(),
        }
    )


def usage() -> dict[str, int]:
    return {
        "prompt_tokens": PROMPT_TOKENS,
        "completion_tokens": COMPLETION_TOKENS,
        "total_tokens": PROMPT_TOKENS + COMPLETION_TOKENS,
    }


def stream_events(model: str, *, include_usage: bool) -> list[bytes]:
    """The SSE events of one streamed answer, each `data: {...}\\n\\n`."""
    head = {"id": f"chatcmpl-bench{next(_ids)}", "object": "chat.completion.chunk", "created": int(time.time())}
    head |= {"model": model, "system_fingerprint": "fp_bench"}
    events = []
    for i, word in enumerate(WORDS):
        delta = {"role": "assistant", "content": word} if i == 0 else {"content": word}
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": None}
        events.append({**head, "choices": [choice]})
    events.append({**head, "choices": [{"index": 0, "delta": {}, "logprobs": None, "finish_reason": "stop"}]})
    if include_usage:
        events.append({**head, "choices": [], "usage": usage()})
    return [b"data: " + dumps(e) + b"\n\n" for e in events] + [b"data: [DONE]\n\n"]


def chunked(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


def head(status: str, content_type: bytes, extra: bytes) -> bytes:
    return b"HTTP/1.1 " + status.encode() + b"\r\ncontent-type: " + content_type + b"\r\n" + extra + b"\r\n"


class UpstreamProtocol(asyncio.Protocol):
    """One keep-alive connection: parses pipelined requests out of a byte buffer and answers them in order."""

    def __init__(self, delay_s: float, chunk_delay_s: float) -> None:
        self.delay_s = delay_s
        self.chunk_delay_s = chunk_delay_s
        self.buffer = b""
        self.transport: asyncio.Transport | None = None
        self.busy: asyncio.Task[None] | None = None  # a delayed answer in progress; later requests wait for it

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        if self.busy is not None:
            self.busy.cancel()

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if self.busy is None:
            self.process()

    def process(self) -> None:
        while self.transport is not None:
            request = self.take_request()
            if request is None:
                return
            method, path, body, close = request
            if self.delay_s or self.chunk_delay_s:
                self.busy = asyncio.ensure_future(self.answer_later(method, path, body, close))
                return
            for part in answer(method, path, body, close):
                self.transport.write(part)
            if close:
                self.transport.close()

    async def answer_later(self, method: str, path: str, body: bytes, close: bool) -> None:
        await asyncio.sleep(self.delay_s)
        for i, part in enumerate(answer(method, path, body, close, split=bool(self.chunk_delay_s))):
            if self.transport is None:
                return
            if i > 1 and self.chunk_delay_s:
                await asyncio.sleep(self.chunk_delay_s)
                if self.transport is None:
                    return
            self.transport.write(part)
        if close and self.transport is not None:
            self.transport.close()
        self.busy = None
        self.process()

    def take_request(self) -> tuple[str, str, bytes, bool] | None:
        """One complete request off the buffer: (method, path, body, close), or None until more data comes."""
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            if len(self.buffer) > MAX_HEADER_BYTES and self.transport is not None:
                self.transport.close()
            return None
        lines = self.buffer[:end].split(b"\r\n")
        method, path, version = (lines[0].decode("latin-1").split(" ") + ["", ""])[:3]
        length, is_chunked, close = 0, False, version == "HTTP/1.0"
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"transfer-encoding":
                is_chunked = b"chunked" in value.lower()
            elif name == b"connection":
                close = value.strip().lower() == b"close"
        start = end + 4
        if is_chunked:
            decoded = dechunk(self.buffer, start)
            if decoded is None:
                return None
            body, consumed = decoded
        else:
            if len(self.buffer) < start + length:
                return None
            body, consumed = self.buffer[start : start + length], start + length
        self.buffer = self.buffer[consumed:]
        return method, path, body, close


def dechunk(buffer: bytes, start: int) -> tuple[bytes, int] | None:
    """A chunk-encoded body from `start`: (body, end offset), or None if it is not complete yet."""
    parts, at = [], start
    while True:
        eol = buffer.find(b"\r\n", at)
        if eol < 0:
            return None
        size = int(buffer[at:eol].split(b";")[0], 16)
        if size == 0:
            end = buffer.find(b"\r\n\r\n", eol)  # after optional trailers
            return None if end < 0 else (b"".join(parts), end + 4)
        if len(buffer) < eol + 2 + size + 2:
            return None
        parts.append(buffer[eol + 2 : eol + 2 + size])
        at = eol + 2 + size + 2


def answer(method: str, path: str, body: bytes, close: bool, *, split: bool = False) -> list[bytes]:
    """The response bytes: [head, body] for JSON; [head + first events..., event, ...] for streams."""
    connection = b"connection: close\r\n" if close else b""
    if method == "POST" and path.endswith("/chat/completions"):
        try:
            request = loads(body)
            model = str(request.get("model") or "gpt-4o-mini")
        except ValueError:
            return json_response("400 Bad Request", error("The request body is not valid JSON."), connection)
        if request.get("stream") is True:
            options = request.get("stream_options")
            include_usage = isinstance(options, dict) and options.get("include_usage") is True
            events = [chunked(e) for e in stream_events(model, include_usage=include_usage)] + [b"0\r\n\r\n"]
            extra = b"cache-control: no-cache\r\ntransfer-encoding: chunked\r\n" + connection
            start = head("200 OK", b"text/event-stream", extra)
            return [start, *events] if split else [start + b"".join(events)]
        return json_response("200 OK", completion(model), connection)
    if method == "GET" and path.endswith("/models"):
        data = {"object": "list", "data": [{"id": "gpt-4o-mini", "object": "model", "created": 0, "owned_by": "b"}]}
        return json_response("200 OK", dumps(data), connection)
    if method == "GET" and path in ("/health", "/healthz"):
        return json_response("200 OK", b'{"status":"ok"}', connection)
    return json_response("404 Not Found", error(f"No route {method} {path}."), connection)


def error(message: str) -> bytes:
    return dumps({"error": {"message": message, "type": "invalid_request_error", "param": None, "code": None}})


def json_response(status: str, payload: bytes, connection: bytes) -> list[bytes]:
    extra = b"content-length: %d\r\n" % len(payload) + connection
    return [head(status, b"application/json", extra) + payload]


async def serve(host: str, port: int, *, delay_s: float, chunk_delay_s: float) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: UpstreamProtocol(delay_s, chunk_delay_s), host, port, reuse_address=True, backlog=4096
    )
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(f"fake upstream on http://{host}:{port}/v1", flush=True)
    async with server:
        await stop.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9100)
    parser.add_argument("--delay-ms", type=float, default=0.0, help="wait before answering (default 0)")
    parser.add_argument("--chunk-delay-ms", type=float, default=0.0, help="wait between stream events (default 0)")
    parser.add_argument("--no-uvloop", action="store_true", help="use asyncio's default event loop")
    args = parser.parse_args()
    runner = asyncio.run
    if not args.no_uvloop:
        try:
            import uvloop

            runner = uvloop.run
        except ImportError:
            pass
    runner(serve(args.host, args.port, delay_s=args.delay_ms / 1000, chunk_delay_s=args.chunk_delay_ms / 1000))


if __name__ == "__main__":
    main()
