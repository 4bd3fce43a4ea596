"""HSTS decided once from the settings, and whose word on the scheme and host is believed."""

from __future__ import annotations

import ipaddress
from dataclasses import replace
from pathlib import Path

import pytest

from gateway.config import ServerSettings
from gateway.http import public_origin
from gateway.proxy.headers import (
    HSTS,
    HeaderRules,
    downstream_response_headers,
    transport_security_headers,
)

PLAIN = ServerSettings(host="127.0.0.1", port=8080, secret_key=None, trusted_proxies=(), public_url=None)
TLS = replace(PLAIN, certfile=Path("cert.pem"), keyfile=Path("key.pem"))
PROXIES = (ipaddress.ip_network("10.0.0.0/8"),)


@pytest.mark.parametrize(("server", "expected"), [
    (PLAIN, ()),  # plain HTTP: browsers ignore HSTS, and a local trial must stay reachable
    (TLS, (HSTS,)),
    (replace(TLS, hsts=False), ()),
    (replace(PLAIN, public_url="https://app.example"), (HSTS,)),  # a TLS terminator in front
    (replace(PLAIN, public_url="http://app.example"), ()),
])
def test_hsts_only_when_browsers_use_https(server: ServerSettings, expected: tuple[object, ...]) -> None:
    assert transport_security_headers(server) == expected


def rules(extra: tuple[tuple[bytes, bytes], ...]) -> HeaderRules:
    return HeaderRules(user_header=b"X-Forwarded-User", roles_header=b"X-Forwarded-Roles",
                       cookie_names=frozenset({b"gateway_session"}), upstream_host=b"127.0.0.1:8081",
                       preserve_host=False, trusted_proxies=(), response_headers=extra)


def test_proxied_responses_carry_the_gateways_hsts_instead_of_the_apps() -> None:
    upstream = [(b"Content-Type", b"text/plain"), (b"Strict-Transport-Security", b"max-age=60")]
    out = downstream_response_headers(upstream, rules((HSTS,)), upstream_origin="http://127.0.0.1:8081",
                                      public_origin="https://gw")
    assert [v for n, v in out if n == b"strict-transport-security"] == [HSTS[1]]
    assert (b"content-type", b"text/plain") in out
    # Without HSTS of its own the gateway relays the app's header untouched.
    out = downstream_response_headers(upstream, rules(()), upstream_origin="http://127.0.0.1:8081",
                                      public_origin="https://gw")
    assert [v for n, v in out if n == b"strict-transport-security"] == [b"max-age=60"]


def origin(peer: str, proto: str | None, host: str | None = None, public_url: str | None = None) -> str:
    return public_origin(public_url=public_url, scheme="http", host="gw.internal:8080", peer=peer,
                         forwarded_proto=proto, forwarded_host=host, networks=PROXIES)


@pytest.mark.parametrize(("peer", "proto", "host", "expected"), [
    ("10.0.0.5", "https", None, "https://gw.internal:8080"),
    ("10.0.0.5", "HTTPS", "app.example", "https://app.example"),
    ("192.0.2.9", "https", "evil.example", "http://gw.internal:8080"),  # not a trusted peer: ignored
    ("10.0.0.5", "http, https", None, "https://gw.internal:8080"),  # the proxy's own (last) word wins
    ("10.0.0.5", "https, http", "evil.example, app.example", "http://app.example"),
    ("10.0.0.5", "javascript", None, "http://gw.internal:8080"),  # not a scheme: ignored
    ("10.0.0.5", None, None, "http://gw.internal:8080"),
])
def test_forwarded_scheme_and_host_only_from_trusted_peers(peer: str, proto: str | None, host: str | None,
                                                           expected: str) -> None:
    assert origin(peer, proto, host) == expected


def test_public_url_wins_over_everything() -> None:
    assert origin("10.0.0.5", "http", "x", public_url="https://app.example") == "https://app.example"
