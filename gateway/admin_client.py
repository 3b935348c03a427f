"""The HTTP client of the admin API that every `gateway` admin command uses: connection flags, requests, tables.

The CLI talks to a running gateway (so every instance's key cache hears of the change) with the master
key or an admin key: `--url` or GATEWAY_URL, `--key` or GATEWAY_MASTER_KEY. Requests go through the standard
library (urllib), not httpx: an admin command starts in tens of milliseconds and sends one or two requests.
Every path is built by `path()`, which encodes each segment, so an argument can never name another path
(`gateway prompts show ../keys` asks for the prompt "../keys").
"""

from __future__ import annotations

import argparse
import json as jsonlib  # `request` takes a `json=` argument, as httpx's does
from typing import Any

TIMEOUT_S = 30


def add_connection_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--url", help="gateway base URL (default $GATEWAY_URL or http://127.0.0.1:4000)")
    parser.add_argument("--key", help="admin or master key (default $GATEWAY_MASTER_KEY)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")


def path(*segments: object) -> str:
    """An API path from its segments, each percent-encoded ('/' included; '.' and '..' too, which clients and
    proxies would otherwise resolve as a step up): path("admin", "prompts", "../keys") -> /admin/prompts/..%2Fkeys."""
    from urllib.parse import quote

    parts = []
    for segment in segments:
        text = quote(str(segment), safe="")
        parts.append(text.replace(".", "%2E") if text in (".", "..") else text)
    return "/" + "/".join(parts)


def request(
    args: argparse.Namespace,
    method: str,
    api_path: str,
    *,
    params: dict[str, Any] | None = None,
    json: Any = None,
    timeout_s: float | None = None,
) -> Any:
    """Sends one request (waiting at most `timeout_s`, default TIMEOUT_S, for the answer); exits with the
    gateway's error message on an error answer, no answer, or an answer that is not JSON."""
    import urllib.error
    import urllib.request
    from urllib.parse import urlencode

    from gateway.settings import admin_connection

    default_url, default_key = admin_connection()
    url = (args.url or default_url).rstrip("/")
    key = args.key or default_key
    if not key:
        raise SystemExit("gateway: no admin key; pass --key or set GATEWAY_MASTER_KEY")
    query = f"?{urlencode(params)}" if params else ""
    headers = {"authorization": f"Bearer {key}", "accept": "application/json"}
    data = None
    if json is not None:
        data = jsonlib.dumps(json).encode()
        headers["content-type"] = "application/json"
    call = urllib.request.Request(url + api_path + query, data=data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(call, timeout=timeout_s or TIMEOUT_S) as response:  # noqa: S310 (operator's URL)
            body = response.read()
    except urllib.error.HTTPError as exc:
        raise SystemExit(f"gateway: {exc.code}: {error_message(exc.read())}") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        if isinstance(reason, TimeoutError):
            raise SystemExit(f"gateway: {url} did not answer within {timeout_s or TIMEOUT_S:g} s") from None
        raise SystemExit(f"gateway: cannot reach {url}: {reason}") from None
    try:
        return jsonlib.loads(body or b"null")
    except ValueError:
        raise SystemExit(f"gateway: {url} answered {api_path} with something that is not JSON") from None


def error_message(body: bytes) -> str:
    try:
        return str(jsonlib.loads(body)["error"]["message"])
    except (ValueError, KeyError, TypeError):
        return body.decode(errors="replace")


def show(args: argparse.Namespace, data: Any, columns: tuple[str, ...]) -> None:
    if args.json:
        print(jsonlib.dumps(data, indent=2, default=str))
        return
    rows = data["data"] if isinstance(data, dict) and "data" in data else [data]
    table = [[fmt(row.get(c)) for c in columns] for row in rows]
    widths = [max([len(c), *(len(r[i]) for r in table)]) for i, c in enumerate(columns)]
    print("  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)))
    for r in table:
        print("  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)))


def fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, list):
        return ",".join(map(str, value))
    return str(value)
