"""A direct upstream's URL and headers, checked and rendered once: the origin to connect to and the request head."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import NamedTuple
from urllib.parse import quote, urlsplit

from gateway import __version__

_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_DEFAULT_PORTS = {"http": 80, "https": 443}
_FRAMING = frozenset({"content-length", "transfer-encoding", "connection", "keep-alive", "te", "upgrade", "trailer"})
_PATH_SAFE = "/%:@!$&'()*+,;=-._~"  # RFC 3986 pchar and "/": kept; anything else (a space) is percent-encoded


class Origin(NamedTuple):
    """Where connections go; a tuple, so the pool's lookups hash it in C."""

    scheme: str
    host: str
    port: int


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One URL with its fixed headers, rendered once: the request head up to the Content-Length value."""

    origin: Origin
    head: bytes

    def request(self, body: bytes) -> bytes:
        return b"".join((self.head, b"%d\r\n\r\n" % len(body), body))


def parse_origin(url: str) -> tuple[Origin, str]:
    """(origin, path) of an http(s) URL; ValueError names what is wrong with it."""
    parts = urlsplit(url)
    if parts.scheme not in _DEFAULT_PORTS:
        raise ValueError(f"{url!r} is not an http:// or https:// URL")
    try:
        host, port = parts.hostname, parts.port
    except ValueError as exc:
        raise ValueError(f"{url!r} has an invalid port") from exc
    if not host:
        raise ValueError(f"{url!r} names no host")
    if parts.username or parts.password:
        raise ValueError(f"{url!r} holds credentials: put them in api_key or headers, not in the URL")
    if port == 0:
        raise ValueError(f"{url!r} has an invalid port")
    path = quote(parts.path or "/", safe=_PATH_SAFE)
    if parts.query:
        path += "?" + quote(parts.query, safe=_PATH_SAFE + "?")
    return Origin(parts.scheme, host, port or _DEFAULT_PORTS[parts.scheme]), path


def check_headers(headers: Mapping[str, str]) -> None:
    """ValueError for a header that cannot be sent as written: a bad name, a line break or a character outside
    Latin-1 in a value, or a header that would change the connection's framing (the gateway sets those)."""
    for name, value in headers.items():
        if not _TOKEN.fullmatch(name):
            raise ValueError(f"header name {name!r} is not a valid HTTP token")
        if name.lower() in _FRAMING:
            raise ValueError(f"header {name!r} is set by the gateway itself; remove it")
        if "\r" in value or "\n" in value or "\0" in value:
            raise ValueError(f"header {name!r} holds a line break or NUL")
        try:
            value.encode("latin-1")
        except UnicodeEncodeError:
            raise ValueError(f"header {name!r} holds characters outside Latin-1; percent-encode them") from None


def make_endpoint(url: str, headers: Mapping[str, str]) -> Endpoint:
    """A POST endpoint sending `headers` (plus Host, Content-Length, User-Agent) on every request."""
    origin, path = parse_origin(url)
    check_headers(headers)
    name = origin.host if origin.host.isascii() else origin.host.encode("idna").decode("ascii")
    host = f"[{name}]" if ":" in name else name
    if origin.port != _DEFAULT_PORTS[origin.scheme]:
        host += f":{origin.port}"
    fixed = {"host": host, "user-agent": f"llm-gateway/{__version__}", "accept-encoding": "identity"}
    fixed.update({name.lower(): value for name, value in headers.items()})
    lines = [f"POST {path} HTTP/1.1"] + [f"{name}: {value}" for name, value in fixed.items()] + ["content-length: "]
    return Endpoint(origin, "\r\n".join(lines).encode("latin-1"))
