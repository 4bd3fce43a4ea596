"""The WebSocket relay's pure parts (close codes, handshake headers, the upstream URI), the re-check
(auth/gate.py's lost_access), and a refused handshake through the dispatcher."""

from __future__ import annotations

from dataclasses import replace
from types import SimpleNamespace
from typing import Any

import pytest

from gateway.asgi import Gateway
from gateway.auth.gate import lost_access
from gateway.http import DEFAULT_PAGES, HostRules, Refusals, Targets, TrustedProxies, method_overrides
from gateway.observe import Exchange, Metrics
from gateway.policy import Decision, Policy, Principal, decide_tunnelled, parse_policy
from gateway.proxy.websocket import WebSocketRelay, handshake_headers, sendable_close_code, upstream_uri
from tests.unit.samples import ALICE, RULES

POLICY = parse_policy({"p.yaml": 'rules:\n  - paths: ["/**"]\n    allow: authenticated\n'
                                 '  - paths: ["/admin/**"]\n    roles: [admin]\n'
                                 '  - paths: ["/ro/**"]\n    methods: [GET]\n    allow: authenticated\n'})


@pytest.mark.parametrize(("code", "expected"), [
    (1000, 1000), (1001, 1001), (1008, 1008), (1011, 1011), (1014, 1014), (3000, 3000), (4999, 4999),
    (1005, 1000),  # "no status" was a normal close without a code
    (1006, 1014), (None, 1014),  # vanished: the fallback
    (1004, 1014), (1015, 1014), (999, 1014), (2999, 1014), (5000, 1014),  # reserved or invalid on the wire
])
def test_sendable_close_code(code: int | None, expected: int) -> None:
    assert sendable_close_code(code, 1014) == expected


def test_handshake_headers_keep_the_http_rules_and_leave_the_handshake_to_the_client() -> None:
    client = [
        (b"host", b"gateway.example"), (b"upgrade", b"websocket"), (b"connection", b"Upgrade"),
        (b"sec-websocket-key", b"abc"), (b"sec-websocket-version", b"13"),
        (b"sec-websocket-extensions", b"permessage-deflate"), (b"sec-websocket-protocol", b"chat"),
        (b"x_forwarded_user", b"mallory"), (b"x-forwarded-roles", b"root"),
        (b"cookie", b"gateway_session=secret; theme=dark"), (b"origin", b"https://gateway.example"),
        (b"user-agent", b"Browser/1"), (b"content-length", b"0"),
    ]
    out = handshake_headers(client, RULES, principal=ALICE, client="192.0.2.7", scheme="wss")
    names = [name for name, _ in out]
    assert not [n for n in names if n.startswith(b"sec-websocket-") or n in {b"host", b"upgrade", b"connection",
                                                                               b"content-length"}]
    got = dict(out)
    assert got[b"x-forwarded-user"] == b"alice" and got[b"x-forwarded-roles"] == b"admin,staff"
    assert names.count(b"x-forwarded-user") == 1 and b"x_forwarded_user" not in names
    assert got[b"cookie"] == b"theme=dark"
    assert got[b"origin"] == b"https://gateway.example" and got[b"user-agent"] == b"Browser/1"
    assert got[b"x-forwarded-proto"] == b"https"  # the HTTP scheme, not "wss"
    assert got[b"x-forwarded-for"] == b"192.0.2.7"


def test_upstream_uri_forwards_the_canonical_path_and_raw_query() -> None:
    uri = upstream_uri("http://127.0.0.1:8081", "/a;b=c/%C3%A9", "x=1&y=%20", host_header=b"gw.example",
                       preserve_host=False)
    assert (uri.secure, uri.host, uri.port, uri.resource_name) == (False, "127.0.0.1", 8081, "/a;b=c/%C3%A9?x=1&y=%20")
    assert upstream_uri("https://app.internal", "/", "", host_header=None, preserve_host=False).port == 443


def test_upstream_uri_with_preserve_host() -> None:
    uri = upstream_uri("http://127.0.0.1:8081", "/ws", "", host_header=b"gw.example:8443", preserve_host=True)
    assert (uri.host, uri.port) == ("gw.example", 8443)
    for bad in (b"gw.example/x", b"user@gw.example", b"gw.example:port", b":8080"):
        with pytest.raises(ValueError):
            upstream_uri("http://127.0.0.1:8081", "/ws", "", host_header=bad, preserve_host=True)


def decision_for(policy: Policy, principal: Principal | None, path: str, headers: list[tuple[bytes, bytes]]) -> Decision:
    """A handshake's decision, as the gate takes it: a GET, and any method it tunnels."""
    return decide_tunnelled(policy, principal, "GET", method_overrides(headers), path)


def test_decision_for_is_a_get_and_its_tunnelled_methods() -> None:
    assert decision_for(POLICY, ALICE, "/ro/feed", []).allowed
    assert not decision_for(POLICY, ALICE, "/ro/feed", [(b"x-http-method-override", b"DELETE")]).allowed
    assert not decision_for(POLICY, None, "/chat", []).allowed


BOB = Principal(user="bob", roles=frozenset({"staff"}), auth_time=0.0)


@pytest.mark.parametrize(("now", "then", "path", "reason"), [
    (ALICE, ALICE, "/admin/x", None),
    (None, ALICE, "/admin/x", "session ended"),
    (Principal("alice", frozenset({"admin"}), 0.0), ALICE, "/admin/x", "roles changed"),  # still allowed, stale header
    (Principal("bob", frozenset({"staff"}), 0.0), BOB, "/admin/x", "no longer allowed"),
    (None, None, "/chat", "no longer allowed"),  # an anonymous socket whose path now needs a sign-in
])
def test_lost_access(now: Principal | None, then: Principal | None, path: str, reason: str | None) -> None:
    assert lost_access(decision_for(POLICY, now, path, []), now, then) == reason


async def _refusal(extensions: dict[str, object] | None) -> list[dict[str, Any]]:
    """What the gateway sends for a malformed WebSocket path (refused before the session or the
    upstream is looked at: the gate and the proxy are never reached)."""
    finished: list[Exchange] = []
    targets = Targets(allow_params=False, case_insensitive=False, hosts=HostRules(), proxies=TrustedProxies())
    refusals = Refusals(DEFAULT_PAGES)
    upstream: Any = SimpleNamespace(websocket_memory=1 << 20)
    gateway = Gateway(SimpleNamespace(), targets=targets, gate=SimpleNamespace(), proxy=SimpleNamespace(),  # type: ignore[arg-type]
                      websockets=WebSocketRelay(upstream, RULES, Metrics(), refusals), refusals=refusals,
                      proxies=TrustedProxies(), access=SimpleNamespace(finish=finished.append),  # type: ignore[arg-type]
                      max_body_size=0)
    scope: dict[str, Any] = {"type": "websocket", "path": "/a/b", "raw_path": b"/a%2Fb", "query_string": b"",
                             "headers": [(b"Host", b"gw")], "subprotocols": []}
    if extensions is not None:
        scope["extensions"] = extensions
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "websocket.connect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await gateway(scope, receive, send)
    # The access line names the refused target as sent, and why.
    (exchange,) = finished
    assert (exchange.decision, exchange.path) == ("bad_request", "/a%2Fb")
    return sent


async def test_refusal_uses_the_http_response_extension_when_offered() -> None:
    sent = await _refusal({"websocket.http.response": {}})
    assert [m["type"] for m in sent] == ["websocket.http.response.start", "websocket.http.response.body"]
    assert sent[0]["status"] == 400 and b"bad_request" in sent[1]["body"]


async def test_refusal_without_the_extension_closes_before_accept() -> None:
    assert await _refusal(None) == [{"type": "websocket.close", "code": 1008}]


def test_handshake_headers_drop_identity_look_alikes_and_strip_headers() -> None:
    rules = replace(RULES, strip_headers=(b"X-Custom-User",))
    spoofs = [(b"X-Forwarded-Email", b"mallory"), (b"x_auth_request_groups", b"mallory"), (b"Remote-User", b"mallory"),
              (b"X-Pomerium-Claim-Email", b"mallory"), (b"CF-Access-Jwt-Assertion", b"mallory"),
              (b"X-Forwarded-Foo", b"mallory"), (b"x_custom_user", b"mallory"), (b"X-WEBAUTH-USER", b"mallory")]
    for client in ("192.0.2.7", "10.1.2.3"):  # an untrusted client, then a trusted proxy
        out = handshake_headers([*spoofs, (b"origin", b"https://gw.example")], rules, principal=ALICE,
                                client=client, scheme="wss")
        assert not [name for name, value in out if value == b"mallory"]
        assert dict(out)[b"x-forwarded-user"] == b"alice" and dict(out)[b"origin"] == b"https://gw.example"
