"""The HTTP client of the admin API that every `gateway` admin command uses: connection flags, requests, tables.

The CLI talks to a running gateway (so every instance's key cache hears of the change) with the master
key or an admin key: `--url` or GATEWAY_URL, `--key` or GATEWAY_MASTER_KEY.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from gateway.settings import Settings


def add_connection_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--url", help="gateway base URL (default $GATEWAY_URL or http://127.0.0.1:4000)")
    parser.add_argument("--key", help="admin or master key (default $GATEWAY_MASTER_KEY)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")


def request(args: argparse.Namespace, method: str, path: str, **kwargs: Any) -> Any:
    import httpx  # here, not at the top: `gateway serve` imports this module and never calls an admin API

    settings = Settings()
    url = (args.url or settings.url).rstrip("/")
    key = args.key or (settings.master_key.get_secret_value() if settings.master_key else None)
    if not key:
        raise SystemExit("gateway: no admin key; pass --key or set GATEWAY_MASTER_KEY")
    try:
        response = httpx.request(method, url + path, headers={"authorization": f"Bearer {key}"}, timeout=30, **kwargs)
    except httpx.TransportError as exc:
        raise SystemExit(f"gateway: cannot reach {url}: {exc}") from None
    if response.status_code >= 400:
        try:
            message = response.json()["error"]["message"]
        except (ValueError, KeyError, TypeError):
            message = response.text
        raise SystemExit(f"gateway: {response.status_code}: {message}")
    return response.json()


def show(args: argparse.Namespace, data: Any, columns: tuple[str, ...]) -> None:
    if args.json:
        print(json.dumps(data, indent=2, default=str))
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
