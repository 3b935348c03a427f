"""The operator log of a real `gateway serve`: every line on stderr in the chosen format, one per request."""

from __future__ import annotations

from pathlib import Path

import httpx
import orjson

from tests.conftest import AUTH, chat
from tests.fake_upstream import FakeUpstream
from tests.servers import ServedGateway, write_config


def test_served_gateway_writes_every_line_as_json_to_stderr_and_one_per_request(
    tmp_path: Path, upstream: FakeUpstream
) -> None:
    # Over 0.5 s: starts a real server (the logging setup is applied by uvicorn in the served process).
    server = ServedGateway(write_config(tmp_path, upstream.base_url)).start()
    try:
        r = httpx.post(f"{server.url}/v1/chat/completions", headers=AUTH, json=chat("gpt-test", "zebra-4242"))
        assert r.status_code == 200
    finally:
        server.stop()
    request_id = r.headers["x-request-id"]
    written = server.log_path.read_text().splitlines()
    mine = [line for line in written if request_id in line]
    assert len(mine) == 1 and "zebra-4242" not in "\n".join(written)
    assert not any("/readyz" in line for line in written)  # the start-up probes are not logged
    lines = [orjson.loads(line) for line in written]  # every line is JSON: the banner's and uvicorn's too
    assert lines[0]["message"].startswith("gateway ") and "color_message" not in lines[1]
    line = orjson.loads(mine[0])
    assert (line["event"], line["route"], line["status"], line["model"]) == (
        "request", "/v1/chat/completions", 200, "gpt-test",
    )  # fmt: skip
