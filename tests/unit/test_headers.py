from __future__ import annotations

from dataclasses import replace

import pytest

from gateway.http import client_address
from gateway.policy import Principal
from gateway.proxy.headers import (
    FOREIGN_IDENTITY,
    FOREIGN_IDENTITY_PREFIXES,
    downstream_response_headers,
    normalize,
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


def test_the_clients_body_framing_never_travels() -> None:
    """The gateway writes its own Content-Length (proxy/framing.py): the client's never passes,
    beside Transfer-Encoding or alone, nor its "_" spelling."""
    out = forward([(b"transfer-encoding", b"chunked"), (b"content-length", b"5")])
    assert b"content-length" not in out and b"transfer-encoding" not in out
    assert b"content-length" not in forward([(b"content-length", b"5")])
    assert not {b"content-length", b"content_length"} & set(forward([(b"Content_Length", b"5")]))


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


# --- identity look-alikes: every X-Forwarded-* the gateway does not set, other gateways' identity
# headers, and [proxy] strip_headers. Each is sent in several spellings, twice, by an untrusted
# client and by a trusted proxy; none may reach the app.

LOOK_ALIKES = [
    # X-Forwarded-* that apps read as identity (oauth2-proxy's, Traefik's, this gateway's Mfa) or anything else
    "X-Forwarded-Email", "X-Forwarded-Groups", "X-Forwarded-Preferred-Username", "X-Forwarded-Access-Token",
    "X-Forwarded-Uid", "X-Forwarded-Login", "X-Forwarded-Name", "X-Forwarded-Id", "X-Forwarded-Role",
    "X-Forwarded-Client-Cert", "X-Forwarded-Tls-Client-Cert", "X-Forwarded-Mfa", "X-Forwarded-Foo",
    # other gateways' conventions
    "Remote-User", "Remote-Groups", "Remote-Email", "Remote-Name", "X-Remote-User", "X-Remote-Group",
    "X-Auth-Request-User", "X-Auth-Request-Email", "X-Auth-Request-Groups", "X-Auth-Request-Preferred-Username",
    "X-Auth-Request-Access-Token", "Gap-Auth", "Gap-Signature",
    "X-Pomerium-Jwt-Assertion", "X-Pomerium-Claim-Email", "X-Pomerium-Claim-Groups",
    "X-Vouch-User", "X-Vouch-Idp-Claims-Groups", "X-Vouch-Idp-AccessToken",
    "X-Authentik-Username", "X-Authentik-Groups", "X-Authentik-Email", "X-Authentik-Jwt",
    "Cf-Access-Authenticated-User-Email", "Cf-Access-Jwt-Assertion",
    "X-WEBAUTH-USER", "X-Webauth-Email", "X-Authenticated-Userid", "X-Authenticated-Scope",
    "X-Consumer-Username", "X-Consumer-ID", "X-Credential-Identifier", "X-Anonymous-Consumer", "X-Userinfo",
    "X-Auth-Username", "X-Auth-Roles", "X-Goog-Authenticated-User-Email", "X-Goog-Iap-Jwt-Assertion",
    "X-Amzn-Oidc-Identity", "X-Amzn-Oidc-Data", "X-MS-CLIENT-PRINCIPAL-NAME", "X-MS-TOKEN-AAD-ACCESS-TOKEN",
    "Tailscale-User-Login", "Shib-Session-ID", "Shib-Identity-Provider", "Eppn", "Affiliation", "Persistent-Id",
    "Auth-Type", "MELLON-NAME-ID", "OIDC-CLAIM-email", "OIDC-Access-Token",
    "X-SSL-Client-Cert", "X-SSL-Client-DN", "X-SSL-Client-Verify", "Ssl-Client-Cert", "SSL_CLIENT_S_DN",
    "X-Client-Cert", "X-ARR-ClientCert", "X-Gateway-Assertion",
]
BUILT_IN = sorted({*FOREIGN_IDENTITY, *(prefix + b"user" for prefix in FOREIGN_IDENTITY_PREFIXES)})
UNTRUSTED, TRUSTED = "192.0.2.7", "10.1.2.3"


def spellings(name: str) -> list[bytes]:
    """The name as written, lower, upper, with underscores, and mixed: backends read them all alike."""
    return [
        name.encode(), name.lower().encode(), name.upper().encode(), name.replace("-", "_").encode(),
        name.lower().replace("-", "_", 1).encode(), name.title().replace("-", "_").encode(),
    ]


GATEWAY_SETS = {b"host", b"x-forwarded-for", b"x-forwarded-proto", b"x-forwarded-host", b"x-forwarded-user",
                b"x-forwarded-roles"}


def assert_none_reach_the_app(sent: list[tuple[bytes, bytes]], out: dict[bytes, list[bytes]], client: str) -> None:
    folded = {normalize(name) for name, value in sent if value.startswith(b"mallory")}
    assert not [name for name in out if normalize(name) in folded and name not in GATEWAY_SETS]
    assert not [v for values in out.values() for v in values if b"mallory" in v]
    # ... while the gateway's own headers and the signed-in user's identity are there, once each.
    assert out[b"x-forwarded-user"] == [b"alice"] and out[b"x-forwarded-roles"] == [b"admin,staff"]
    assert out[b"x-forwarded-for"] == [client.encode()] and out[b"x-forwarded-proto"] == [b"https"]


@pytest.mark.parametrize("client", [UNTRUSTED, TRUSTED])
@pytest.mark.parametrize("name", LOOK_ALIKES)
def test_identity_look_alikes_never_reach_the_app(name: str, client: str) -> None:
    sent = [(spelling, b"mallory-" + bytes([65 + i])) for i, spelling in enumerate(spellings(name))]
    sent += [(name.encode(), b"mallory-dup"), (b"accept", b"*/*")]
    out = forward(sent, ALICE, client=client)
    assert_none_reach_the_app(sent, out, client)
    assert out[b"accept"] == [b"*/*"]


@pytest.mark.parametrize("client", [UNTRUSTED, TRUSTED])
@pytest.mark.parametrize("name", BUILT_IN, ids=lambda name: name.decode())
def test_every_name_and_family_of_the_built_in_list_is_removed(name: bytes, client: str) -> None:
    text = name.decode()
    sent = [(spelling, b"mallory") for spelling in spellings(text)] + [(name, b"mallory-dup")]
    assert_none_reach_the_app(sent, forward(sent, ALICE, client=client), client)


def test_ordinary_headers_pass_beside_the_look_alikes() -> None:
    ordinary = [
        (b"accept", b"*/*"), (b"authorization", b"Bearer t"), (b"x-requested-with", b"XMLHttpRequest"),
        (b"x-csrf-token", b"c"), (b"x-api-key", b"k"), (b"x-auth-token", b"t"), (b"x-access-token", b"t"),
        (b"x-user-agent", b"u"), (b"remotely", b"r"), (b"x-forwardedfoo", b"f"), (b"content-type", b"text/plain"),
        (b"origin", b"https://gw.example"), (b"x-mailer", b"m"), (b"user-agent", b"Browser/1"),
    ]
    sent = [*ordinary, (b"X-Forwarded-Email", b"mallory"), (b"Remote_User", b"mallory")]
    out = forward(sent)
    assert [(name, value) for name, value in out.items() if name in dict(ordinary)] == \
        [(name, [value]) for name, value in ordinary]
    assert b"x-forwarded-email" not in out and b"remote-user" not in out and b"remote_user" not in out


def test_a_trusted_proxy_passes_its_routing_headers_but_no_identity() -> None:
    sent = [
        (b"x-forwarded-for", b"203.0.113.9"), (b"x-forwarded-proto", b"https"), (b"x-forwarded-host", b"app.example"),
        (b"x-forwarded-prefix", b"/app"), (b"forwarded", b"for=203.0.113.9"), (b"x-real-ip", b"203.0.113.9"),
        (b"x-forwarded-user", b"mallory"), (b"x-forwarded-roles", b"admin"), (b"x-forwarded-email", b"m@evil"),
        (b"x-forwarded-groups", b"admin"), (b"x-forwarded-mfa", b"true"), (b"x-gateway-assertion", b"forged"),
        (b"x-forwarded-port", b"443"), (b"x-forwarded-foo", b"bar"),
    ]
    out = forward(sent, client=TRUSTED)
    assert set(out) == {b"host", b"x-forwarded-for", b"x-forwarded-proto", b"x-forwarded-host",
                        b"x-forwarded-prefix", b"forwarded", b"x-real-ip"}
    assert out[b"x-forwarded-for"] == [b"203.0.113.9, 10.1.2.3"] and out[b"x-forwarded-prefix"] == [b"/app"]


def test_untrusted_clients_keep_no_x_forwarded_header_of_their_own() -> None:
    sent = [(b"X-Forwarded-" + suffix, b"mallory") for suffix in (b"Port", b"Server", b"Ssl", b"Prefix", b"Anything")]
    out = forward([*sent, (b"host", b"gw.example")])
    assert sorted(name for name in out if name.startswith(b"x-forwarded-")) == \
        [b"x-forwarded-for", b"x-forwarded-host", b"x-forwarded-proto"]
    assert b"mallory" not in b"".join(v for values in out.values() for v in values)


STRIPPING = replace(RULES, strip_headers=(b"X-Custom-User", b"x_acme_*", b"Forwarded", b"X-Real-*"))


@pytest.mark.parametrize("client", [UNTRUSTED, TRUSTED])
@pytest.mark.parametrize("name", ["X-Custom-User", "X-Acme-Login", "X-Acme-", "X-ACME-GROUPS", "Forwarded", "X-Real-IP"])
def test_strip_headers_adds_names_and_prefixes(name: str, client: str) -> None:
    sent = [(spelling, b"mallory") for spelling in spellings(name)] + [(name.encode(), b"mallory-dup")]
    out: dict[bytes, list[bytes]] = {}
    for key, value in upstream_request_headers(sent, STRIPPING, principal=ALICE, client=client, scheme="https"):
        out.setdefault(key, []).append(value)
    assert_none_reach_the_app(sent, out, client)


def test_strip_headers_names_are_exact_unless_starred() -> None:
    kept = [(b"x-custom-user-agent", b"kept"), (b"x-custom-username", b"kept"), (b"x-acme", b"kept")]
    sent = [*kept, (b"X-Custom-User", b"mallory"), (b"X-Acme-Id", b"mallory")]
    out = upstream_request_headers(sent, STRIPPING, principal=None, client=UNTRUSTED, scheme="https")
    assert [(name, value) for name, value in out if name.startswith((b"x-custom", b"x-acme"))] == kept
