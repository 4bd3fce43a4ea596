from __future__ import annotations

import pytest

from gateway.policy import Principal
from gateway.proxy.headers import (
    client_address,
    downstream_response_headers,
    strip_cookies,
    upstream_request_headers,
)
from gateway.proxy.links import rewrite_header
from tests.unit.samples import ALICE, RULES


def forward(
    headers: list[tuple[bytes, bytes]], principal: Principal | None = None, client: str = "192.0.2.7"
) -> dict[bytes, list[bytes]]:
    out: dict[bytes, list[bytes]] = {}
    for name, value in upstream_request_headers(headers, RULES, principal=principal, client=client, scheme="https"):
        out.setdefault(name, []).append(value)
    return out


@pytest.mark.parametrize(
    "name",
    [
        b"x-forwarded-user",
        b"X-Forwarded-User",
        b"x_forwarded_user",
        b"X_FORWARDED_USER",
        b"x-forwarded_roles",
        b"remote-addr",
        b"remote_addr",
    ],
)
def test_identity_copies_are_removed(name: bytes) -> None:
    out = forward([(name, b"mallory")])
    assert all(b"mallory" not in v for values in out.values() for v in values)


def test_identity_is_set_sorted() -> None:
    out = forward([(b"x-forwarded-user", b"mallory")], ALICE)
    assert out[b"x-forwarded-user"] == [b"alice"]
    assert out[b"x-forwarded-roles"] == [b"admin,staff"]


def test_anonymous_gets_no_identity() -> None:
    out = forward([])
    assert b"x-forwarded-user" not in out and b"x-forwarded-roles" not in out


@pytest.mark.parametrize(
    "name",
    [
        b"connection",
        b"keep-alive",
        b"te",
        b"trailer",
        b"upgrade",
        b"proxy-authorization",
        b"proxy-connection",
        b"transfer-encoding",
    ],
)
def test_hop_by_hop_removed(name: bytes) -> None:
    assert name not in forward([(name, b"x")])


def test_connection_nominated_headers_removed() -> None:
    out = forward([(b"connection", b"close, X-Hop"), (b"x-hop", b"1"), (b"x-keep", b"1")])
    assert b"x-hop" not in out and b"x-keep" in out


def test_content_length_dropped_beside_transfer_encoding() -> None:
    out = forward([(b"transfer-encoding", b"chunked"), (b"content-length", b"5")])
    assert b"content-length" not in out and b"transfer-encoding" not in out
    assert forward([(b"content-length", b"5")])[b"content-length"] == [b"5"]


def test_untrusted_routing_headers_replaced() -> None:
    out = forward(
        [
            (b"x-forwarded-for", b"1.2.3.4"),
            (b"x-forwarded-host", b"evil"),
            (b"forwarded", b"for=x"),
            (b"x-original-url", b"/admin"),
            (b"host", b"gw.example"),
        ]
    )
    assert out[b"x-forwarded-for"] == [b"192.0.2.7"]
    assert out[b"x-forwarded-host"] == [b"gw.example"]
    assert out[b"x-forwarded-proto"] == [b"https"]
    assert out[b"host"] == [b"127.0.0.1:8081"]
    assert b"forwarded" not in out and b"x-original-url" not in out


def test_trusted_proxy_chain_is_extended() -> None:
    out = forward(
        [
            (b"x-forwarded-for", b"203.0.113.9"),
            (b"x-forwarded-proto", b"https"),
            (b"x-forwarded-host", b"app.example"),
            (b"host", b"internal"),
        ],
        client="10.1.2.3",
    )
    assert out[b"x-forwarded-for"] == [b"203.0.113.9, 10.1.2.3"]
    assert out[b"x-forwarded-host"] == [b"app.example"]


def test_trusted_proxy_cannot_use_underscore_variants() -> None:
    out = forward([(b"x_forwarded_for", b"6.6.6.6")], client="10.1.2.3")
    assert out[b"x-forwarded-for"] == [b"10.1.2.3"]


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (b"gateway_session=abc; theme=dark", b"theme=dark"),
        (b"theme=dark;gateway_session=abc;gateway_csrf=x;lang=en", b"theme=dark; lang=en"),
        (b"gateway_session=abc", None),
        (b"gateway_session_x=1", b"gateway_session_x=1"),
    ],
)
def test_strip_cookies(header: bytes, expected: bytes | None) -> None:
    assert strip_cookies(header, RULES.cookie_names) == expected


@pytest.mark.parametrize(
    ("location", "expected"),
    [
        (b"http://127.0.0.1:8081/x?y=1", b"https://gw.example/x?y=1"),
        (b"http://127.0.0.1:8081", b"https://gw.example/"),
        (b"HTTP://127.0.0.1:8081/x", b"https://gw.example/x"),
        (b"http://127.0.0.1:8082/x", b"http://127.0.0.1:8082/x"),
        (b"https://other.example/x", b"https://other.example/x"),
        (b"/relative", b"/relative"),
        # The app's other names for itself on loopback.
        (b"http://localhost:8081/a", b"https://gw.example/a"),
        (b"http://[::1]:8081/a", b"https://gw.example/a"),
        (b"https://127.0.0.1:8081/a", b"https://127.0.0.1:8081/a"),  # another scheme: another server
        (b"http://127.0.0.1:8081@evil.example/a", b"http://127.0.0.1:8081@evil.example/a"),
    ],
)
def test_rewrite_location(location: bytes, expected: bytes) -> None:
    assert rewrite_header(b"location", location, "http://127.0.0.1:8081", "https://gw.example") == expected


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        (b"content-location", b"http://127.0.0.1:8081/c.json", b"https://gw.example/c.json"),
        (b"link", b'<http://127.0.0.1:8081/db?_next=2>; rel="next", <https://cdn.example/x>; rel=preload',
         b'<https://gw.example/db?_next=2>; rel="next", <https://cdn.example/x>; rel=preload'),
        (b"link", b"</relative>; rel=next", b"</relative>; rel=next"),
        (b"refresh", b"5; url=http://localhost:8081/x", b"5; url=https://gw.example/x"),
        (b"refresh", b"0;URL='http://127.0.0.1:8081/y'", b"0;URL='https://gw.example/y'"),
        (b"refresh", b"30", b"30"),
    ],
)
def test_rewrite_url_headers(name: bytes, value: bytes, expected: bytes) -> None:
    assert rewrite_header(name, value, "http://127.0.0.1:8081", "https://gw.example") == expected


def test_response_headers() -> None:
    out = downstream_response_headers(
        [
            (b"Connection", b"close, X-Hop"),
            (b"X-Hop", b"1"),
            (b"Set-Cookie", b"gateway_session=evil; Path=/"),
            (b"Set-Cookie", b"theme=dark"),
            (b"Location", b"http://127.0.0.1:8081/a"),
            (b"Content-Length", b"3"),
        ],
        RULES,
        upstream_origin="http://127.0.0.1:8081",
        public_origin="https://gw.example",
    )
    assert out == [(b"set-cookie", b"theme=dark"), (b"location", b"https://gw.example/a"), (b"content-length", b"3")]


@pytest.mark.parametrize(("status", "kept"), [(200, True), (404, True), (204, False), (304, False)])
def test_a_bodiless_status_sends_no_content_length(status: int, kept: bool) -> None:
    out = downstream_response_headers([(b"Content-Length", b"5"), (b"ETag", b'"x"')], RULES,
                                      upstream_origin="http://127.0.0.1:8081", public_origin="https://gw", status=status)
    assert ((b"content-length", b"5") in out) is kept and (b"etag", b'"x"') in out


@pytest.mark.parametrize(
    ("peer", "xff", "expected"),
    [
        ("192.0.2.1", ["6.6.6.6"], "192.0.2.1"),
        ("10.0.0.1", ["203.0.113.5"], "203.0.113.5"),
        ("10.0.0.1", ["6.6.6.6, 203.0.113.5, 10.0.0.2"], "203.0.113.5"),
        ("10.0.0.1", [], "10.0.0.1"),
    ],
)
def test_client_address(peer: str, xff: list[str], expected: str) -> None:
    assert client_address(peer, xff, RULES.trusted_proxies) == expected


def test_request_id_replaces_every_client_copy_upstream() -> None:
    sent = [(b"x-request-id", b"forged"), (b"X_Request_ID", b"other"), (b"accept", b"*/*")]
    out = upstream_request_headers(sent, RULES, principal=None, client="192.0.2.7", scheme="https", request_id=b"abc")
    assert [v for n, v in out if n.replace(b"_", b"-").lower() == b"x-request-id"] == [b"abc"]


def test_request_id_replaces_the_apps_copy_downstream() -> None:
    out = downstream_response_headers([(b"X-Request-ID", b"app"), (b"content-type", b"text/plain")], RULES,
                                      upstream_origin="http://127.0.0.1:8081", public_origin="https://gw",
                                      request_id=b"abc")
    assert [v for n, v in out if n == b"x-request-id"] == [b"abc"]
