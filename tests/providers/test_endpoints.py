"""gateway.providers.endpoints: a direct upstream's URL and headers, checked and rendered into a request head."""

from __future__ import annotations

import re

import pytest

from gateway.providers.endpoints import check_headers, make_endpoint, parse_origin


@pytest.mark.parametrize(
    ("url", "host"),
    [
        ("http://api.example.com/v1", b"host: api.example.com\r\n"),
        ("https://api.example.com/v1", b"host: api.example.com\r\n"),
        ("http://api.example.com:443/v1", b"host: api.example.com:443\r\n"),
        ("https://api.example.com:8443/v1", b"host: api.example.com:8443\r\n"),
        ("https://[2001:db8::1]/v1", b"host: [2001:db8::1]\r\n"),
    ],
    ids=["http", "https", "http-on-443", "https-on-8443", "ipv6"],
)
def test_endpoint_host_header_port_omitted_only_for_default_port(url: str, host: bytes) -> None:
    head = make_endpoint(url, {}).head
    assert head.startswith(b"POST /v1 HTTP/1.1\r\n" + host)
    assert make_endpoint(url.removesuffix("/v1"), {}).head.startswith(b"POST / HTTP/1.1\r\n")


def test_endpoint_path_and_query_are_sent_percent_encoded_where_needed() -> None:
    head = make_endpoint("http://h:8000/my models/v1?api-version=2024-06-01&x=a b", {}).head
    assert head.startswith(b"POST /my%20models/v1?api-version=2024-06-01&x=a%20b HTTP/1.1\r\nhost: h:8000\r\n")


def test_endpoint_headers_are_sent_lower_cased_after_the_gateways_own() -> None:
    head = make_endpoint("https://h/v1", {"X-Team": "blue", "Host": "api.internal"}).head
    assert b"\r\nx-team: blue\r\n" in head
    assert b"\r\nhost: api.internal\r\n" in head and head.count(b"host:") == 1  # an explicit Host wins
    assert head.count(b"content-length") == 1 and head.endswith(b"content-length: ")


def test_endpoint_of_an_international_domain_sends_its_ascii_host() -> None:
    head = make_endpoint("https://bücher.example/v1", {}).head
    assert b"\r\nhost: xn--bcher-kva.example\r\n" in head


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("ftp://files.example.com/v1", "is not an http:// or https:// URL"),
        ("api.example.com/v1", "is not an http:// or https:// URL"),
        ("http:///v1", "names no host"),
        ("http://api.example.com:99999/v1", "has an invalid port"),
        ("http://api.example.com:port/v1", "has an invalid port"),
        ("http://api.example.com:0/v1", "has an invalid port"),
        ("https://user:secret@api.example.com/v1", "holds credentials"),
        ("https://sk-key@api.example.com/v1", "holds credentials"),
    ],
    ids=["ftp", "no-scheme", "no-host", "port-too-big", "port-not-number", "port-zero", "user-password", "user"],
)
def test_parse_origin_bad_url_raises_value_error_naming_problem(url: str, problem: str) -> None:
    with pytest.raises(ValueError, match=re.escape(problem)):
        parse_origin(url)
    with pytest.raises(ValueError, match=re.escape(problem)):
        make_endpoint(url, {})


@pytest.mark.parametrize(
    ("headers", "problem"),
    [
        ({"X Bad": "v"}, "header name 'X Bad' is not a valid HTTP token"),
        ({"": "v"}, "header name '' is not a valid HTTP token"),
        ({"X-Name:": "v"}, "is not a valid HTTP token"),
        ({"X-Ok": "v\r\nInjected: 1"}, "header 'X-Ok' holds a line break or NUL"),
        ({"X-Ok": "v\nInjected: 1"}, "holds a line break"),
        ({"X-Ok": "v\0"}, "holds a line break or NUL"),
        ({"X-Ok": "caf\u00e9 \u2615"}, "holds characters outside Latin-1"),
        ({"Content-Length": "5"}, "header 'Content-Length' is set by the gateway itself"),
        ({"transfer-encoding": "chunked"}, "is set by the gateway itself"),
        ({"Connection": "close"}, "is set by the gateway itself"),
    ],
    ids=[
        "space-in-name",
        "empty-name",
        "colon-in-name",
        "crlf-in-value",
        "lf-in-value",
        "nul-in-value",
        "not-latin-1",
        "content-length",
        "transfer-encoding",
        "connection",
    ],
)
def test_check_headers_bad_header_raises_value_error_naming_problem(headers: dict[str, str], problem: str) -> None:
    with pytest.raises(ValueError, match=re.escape(problem)):
        check_headers(headers)
    with pytest.raises(ValueError, match=re.escape(problem)):
        make_endpoint("https://api.example.com/v1", headers)
