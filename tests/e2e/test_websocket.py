"""The WebSocket relay through the real gateway, to a real WebSocket upstream (tests/e2e/ws_upstream.py)."""

from __future__ import annotations

import contextlib
import json
import secrets
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import ClientConnection, connect

from tests.e2e.harness import (
    PYTHON,
    USER_AGENT,
    Gateway,
    Upstream,
    csrf_token,
    free_port,
    port_open,
    sign_in,
    wait_until,
    write_gateway,
)

USERS = {"alice": "admin", "bob": "staff", "rita": "staff", "lou": "staff", "sam": "staff"}
MAX_MESSAGE = 4 * 1024 * 1024  # the gateway's [upstream] websocket_max_message in these tests


@pytest.fixture(scope="module")
def ws_upstream() -> Iterator[Upstream]:
    port = free_port()
    process = subprocess.Popen([PYTHON, str(Path(__file__).with_name("ws_upstream.py")), "--port", str(port)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_until(lambda: port_open(port), "WebSocket upstream")
    yield Upstream(port, process)
    process.terminate()
    process.wait(10)


@pytest.fixture(scope="module")
def ws_gateway(ws_upstream: Upstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    instance = write_gateway(tmp_path_factory.mktemp("wsgw"), ws_upstream.url,
                             settings={"upstream": {"websocket_max_message": "4MiB"}})
    for name, roles in USERS.items():
        instance.add_user(name, roles)
    instance.start()
    yield instance
    instance.stop()


def stats(upstream: Upstream) -> dict[str, Any]:
    result: dict[str, Any] = httpx.get(upstream.url + "/_stats", timeout=5).json()
    return result


@contextlib.contextmanager
def signed_in(gateway: Gateway, user: str) -> Iterator[httpx.Client]:
    with gateway.client() as client:
        assert sign_in(client, user).status_code == 303
        yield client


def open_socket(gateway: Gateway, path: str, cookie: str | None = None, *,
                headers: dict[str, str] | None = None, **kwargs: Any) -> ClientConnection:
    extra = dict(headers or {})
    if cookie is not None:
        extra["Cookie"] = f"gateway_session={cookie}" + ("; " + extra.pop("Cookie") if "Cookie" in extra else "")
    return connect(f"ws://127.0.0.1:{gateway.port}{path}", additional_headers=extra,
                   user_agent_header=USER_AGENT.decode(), proxy=None, open_timeout=10, **kwargs)


def refused(gateway: Gateway, path: str, cookie: str | None = None) -> InvalidStatus:
    with pytest.raises(InvalidStatus) as info:
        open_socket(gateway, path, cookie).close()
    return info.value


@contextlib.contextmanager
def user_socket(gateway: Gateway, user: str, path: str) -> Iterator[tuple[httpx.Client, ClientConnection]]:
    """A fresh session for ``user`` and a socket open on ``path`` with it."""
    with signed_in(gateway, user) as client, open_socket(gateway, path, client.cookies["gateway_session"]) as socket:
        socket.send("ready?")
        assert socket.recv(timeout=5) == "ready?"
        yield client, socket


def wait_for_close(socket: ClientConnection, timeout: float = 8.0) -> ConnectionClosed:
    """Read until the gateway closes the socket (each recv blocks until a message or the close)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.recv(timeout=0.5)
        except TimeoutError:
            continue
        except ConnectionClosed as closed:
            return closed
    raise AssertionError(f"the socket is still open after {timeout}s")


def upstream_close(upstream: Upstream, path: str) -> list[Any]:
    """How the upstream's socket at ``path`` ended: [code, reason] as the gateway closed it."""
    wait_until(lambda: path in stats(upstream)["closed"], f"upstream close of {path}", timeout=8)
    closed: list[Any] = stats(upstream)["closed"][path]
    return closed


@pytest.fixture(scope="module")
def alice(ws_gateway: Gateway) -> Iterator[str]:
    with signed_in(ws_gateway, "alice") as client:
        yield client.cookies["gateway_session"]


def test_echo_text_and_binary(ws_gateway: Gateway, ws_upstream: Upstream, alice: str) -> None:
    before = stats(ws_upstream)["handshakes"]
    with open_socket(ws_gateway, "/chat/echo", alice, max_size=None) as socket:
        assert stats(ws_upstream)["handshakes"] == before + 1  # the counter the refusal tests rely on
        socket.send("héllo ✓")
        assert socket.recv(timeout=5) == "héllo ✓"
        socket.send(bytes(range(256)) * 4)
        assert socket.recv(timeout=5) == bytes(range(256)) * 4
        # Above the websockets library's own 1 MiB default on both legs: the limit is the setting's.
        big = secrets.token_bytes(3 * 1024 * 1024)
        socket.send(big)
        assert socket.recv(timeout=20) == big


def test_message_over_the_limit_closes_with_1009(ws_gateway: Gateway, alice: str) -> None:
    with open_socket(ws_gateway, "/chat/big", alice, max_size=None) as socket:
        socket.send(b"x" * (MAX_MESSAGE + 1))
        assert wait_for_close(socket).rcvd is not None
        assert socket.close_code == 1009


def test_an_oversized_message_from_the_app_closes_the_browser_side_with_1009(ws_gateway: Gateway, alice: str) -> None:
    with open_socket(ws_gateway, "/chat/big-down", alice, max_size=None) as socket:
        socket.send(f"send bytes {MAX_MESSAGE}")
        assert len(socket.recv(timeout=10)) == MAX_MESSAGE  # at the limit: relayed
        socket.send(f"send bytes {MAX_MESSAGE + 1}")
        assert wait_for_close(socket).rcvd is not None
        assert socket.close_code == 1009  # the same code as the other way, not 1014


def test_upstream_handshake_carries_identity_not_spoofs_nor_gateway_cookie(ws_gateway: Gateway, alice: str) -> None:
    spoofs = {"X-Forwarded-User": "mallory", "X_Forwarded_User": "mallory", "x-forwarded-roles": "root",
              "X_FORWARDED_ROLES": "root", "Cookie": "theme=dark"}
    with open_socket(ws_gateway, "/chat/room?x=1&y=%20", alice, headers=spoofs, origin=ws_gateway.url,  # type: ignore[arg-type]
                     subprotocols=["chat.v2"]) as socket:
        assert socket.subprotocol == "chat.v2"  # the upstream's choice, accepted towards the client
        socket.send("headers?")
        raw = socket.recv(timeout=5)
        assert isinstance(raw, str)
        seen = json.loads(raw)
    assert seen["path"] == "/chat/room?x=1&y=%20"
    headers = [(name.lower(), value) for name, value in seen["headers"]]
    identity = [(name, value) for name, value in headers if name.replace("_", "-") in {"x-forwarded-user", "x-forwarded-roles"}]
    assert sorted(identity) == [("x-forwarded-roles", "admin"), ("x-forwarded-user", "alice")]
    assert [value for name, value in headers if name == "cookie"] == ["theme=dark"]
    assert not any(alice in value or "gateway_session" in value for _, value in headers)
    assert dict(headers)["user-agent"] == USER_AGENT.decode()
    assert dict(headers)["origin"] == ws_gateway.url
    assert dict(headers)["sec-websocket-protocol"] == "chat.v2"
    assert [name for name, _ in headers].count("host") == 1


def test_upstream_handshake_carries_no_identity_look_alikes(ws_gateway: Gateway, alice: str) -> None:
    spoofs = {"X-Forwarded-Email": "mallory", "X_Forwarded_Groups": "mallory", "X-Forwarded-Foo": "mallory",
              "Remote-User": "mallory", "X-Auth-Request-User": "mallory", "X-WEBAUTH-USER": "mallory",
              "Cf-Access-Authenticated-User-Email": "mallory", "X-Pomerium-Claim-Email": "mallory",
              "X-Authentik-Username": "mallory", "X-Vouch-User": "mallory", "X-SSL-Client-Cert": "mallory"}
    with open_socket(ws_gateway, "/chat/room", alice, headers=spoofs) as socket:
        socket.send("headers?")
        raw = socket.recv(timeout=5)
        assert isinstance(raw, str)
        seen = json.loads(raw)
    assert not [(name, value) for name, value in seen["headers"] if "mallory" in value]
    assert dict((name.lower(), value) for name, value in seen["headers"])["x-forwarded-user"] == "alice"


@pytest.mark.parametrize("origin", ["http://evil.example", "null", "https://127.0.0.1:{port}", "http://127.0.0.1:1"])
def test_a_socket_from_another_site_may_not_ride_on_the_session(
    ws_gateway: Gateway, ws_upstream: Upstream, alice: str, origin: str
) -> None:
    """Cross-site WebSocket hijacking: browsers send the cookie and apply no CORS to WebSockets."""
    before = stats(ws_upstream)["handshakes"]
    with pytest.raises(InvalidStatus) as info:
        open_socket(ws_gateway, "/chat/room", alice, origin=origin.format(port=ws_gateway.port)).close()  # type: ignore[arg-type]
    assert info.value.response.status_code == 403
    assert stats(ws_upstream)["handshakes"] == before  # never reached the app
    with open_socket(ws_gateway, "/chat/room", alice) as socket:  # no Origin (not a browser): fine
        socket.send("hi")
        assert socket.recv(timeout=5) == "hi"


def test_anonymous_socket_on_a_public_path_gets_no_identity(ws_gateway: Gateway) -> None:
    with open_socket(ws_gateway, "/public/feed", headers={"X-Forwarded-User": "mallory"}) as socket:
        socket.send("headers?")
        raw = socket.recv(timeout=5)
        assert isinstance(raw, str)
        seen = json.loads(raw)
    names = {name.lower().replace("_", "-") for name, _ in seen["headers"]}
    assert "x-forwarded-user" not in names and "x-forwarded-roles" not in names


@pytest.mark.parametrize(("path", "user", "status"), [
    ("/chat/room", None, 401),  # no session
    ("/internal/feed", "alice", 403),  # a deny rule
    ("/admin/feed", "bob", 403),  # a role bob does not hold
    ("/chat/a%2Fb", "alice", 400),  # an encoded separator
    ("/chat/%252e%252e/admin", "alice", 400),  # double encoding
    ("/.gateway/whoami", "alice", 404),  # the gateway's own pages take no WebSocket
])
def test_refused_handshakes_never_reach_the_upstream(ws_gateway: Gateway, ws_upstream: Upstream, alice: str,
                                                     path: str, user: str | None, status: int) -> None:
    if user == "bob":
        with signed_in(ws_gateway, "bob") as client:
            cookie: str | None = client.cookies["gateway_session"]
    else:
        cookie = alice if user == "alice" else None
    before = stats(ws_upstream)["handshakes"]
    error = refused(ws_gateway, path, cookie)
    assert error.response.status_code == status
    assert json.loads(error.response.body or b"{}")["error"]
    assert stats(ws_upstream)["handshakes"] == before


def test_a_forged_cookie_is_refused(ws_gateway: Gateway, ws_upstream: Upstream) -> None:
    before = stats(ws_upstream)["handshakes"]
    assert refused(ws_gateway, "/chat/room", "forged.value.here").response.status_code == 401
    assert stats(ws_upstream)["handshakes"] == before


def test_upstream_refusal_is_a_502(ws_gateway: Gateway, alice: str) -> None:
    assert refused(ws_gateway, "/reject/me", alice).response.status_code == 502


def test_client_close_closes_the_upstream_with_its_code(ws_gateway: Gateway, ws_upstream: Upstream, alice: str) -> None:
    path = f"/chat/leaving-{secrets.token_hex(4)}"
    with open_socket(ws_gateway, path, alice) as socket:
        socket.send("hi")
        assert socket.recv(timeout=5) == "hi"
        socket.close(4000, "bye")
    assert upstream_close(ws_upstream, path) == [4000, "bye"]


def test_upstream_close_closes_the_client_with_its_code(ws_gateway: Gateway, alice: str) -> None:
    with open_socket(ws_gateway, "/chat/ending", alice) as socket:
        socket.send("close 4001 done")
        closed = wait_for_close(socket)
    assert closed.rcvd is not None and (closed.rcvd.code, closed.rcvd.reason) == (4001, "done")


def test_revoking_the_session_closes_an_open_socket(ws_gateway: Gateway, ws_upstream: Upstream) -> None:
    path = f"/chat/revoked-{secrets.token_hex(4)}"
    with user_socket(ws_gateway, "rita", path) as (_, socket):
        result = ws_gateway.cli("sessions", "revoke", "--user", "rita")
        assert result.returncode == 0, result.stderr
        closed = wait_for_close(socket)
    assert closed.rcvd is not None and closed.rcvd.code == 1008
    assert upstream_close(ws_upstream, path)[0] == 1008


def test_signing_out_elsewhere_closes_an_open_socket(ws_gateway: Gateway) -> None:
    with user_socket(ws_gateway, "lou", "/chat/lou") as (client, socket):
        form = client.get("/.gateway/logout")
        assert client.post("/.gateway/logout", data={"csrf_token": csrf_token(form.text)}).status_code == 200
        closed = wait_for_close(socket)
    assert closed.rcvd is not None and closed.rcvd.code == 1008


def test_a_role_change_closes_an_open_socket(ws_gateway: Gateway) -> None:
    # /** still allows sam as an analyst: the socket closes because the app was told "staff".
    with user_socket(ws_gateway, "sam", "/chat/sam") as (_, socket):
        assert ws_gateway.cli("users", "set-roles", "sam", "analyst").returncode == 0
        closed = wait_for_close(socket)
    assert closed.rcvd is not None and closed.rcvd.code == 1008


def test_a_policy_change_closes_an_open_socket(ws_gateway: Gateway, alice: str) -> None:
    with open_socket(ws_gateway, "/chat/doomed/room", alice) as socket:
        socket.send("ping")
        assert socket.recv(timeout=5) == "ping"
        policy = ws_gateway.directory / "policies" / "main.yaml"
        policy.write_text(policy.read_text() + '  - paths: ["/chat/doomed/**"]\n    deny: true\n')
        closed = wait_for_close(socket)
    assert closed.rcvd is not None and closed.rcvd.code == 1008


def test_unreachable_upstream_is_a_502(make_gateway: Any) -> None:
    gateway = make_gateway(upstream_url=f"http://127.0.0.1:{free_port()}", users={"una": "staff"})
    with signed_in(gateway, "una") as client:
        assert refused(gateway, "/chat/room", client.cookies["gateway_session"]).response.status_code == 502


def test_websocket_access_line_request_id_and_metrics(ws_gateway: Gateway, alice: str) -> None:
    from tests.e2e.test_observability import access_line, parse

    def scrape() -> dict[Any, float]:
        return parse(httpx.get(ws_gateway.url + "/.gateway/metrics", timeout=10).text)

    total, is_open = ("gateway_websockets_total", frozenset()), ("gateway_websockets_open", frozenset())
    before = scrape()
    with open_socket(ws_gateway, "/chat/observed?secret=q", alice, headers={"X-Request-ID": "ws-obs-1"}) as socket:
        assert socket.response is not None and socket.response.headers["X-Request-ID"] == "ws-obs-1"
        socket.send("headers?")
        raw = socket.recv(timeout=5)
        assert isinstance(raw, str)
        seen = json.loads(raw)
        assert [v for k, v in seen["headers"] if k.lower() == "x-request-id"] == ["ws-obs-1"]
        during = scrape()
        assert during[total] == before[total] + 1 and during[is_open] == before[is_open] + 1
    wait_until(lambda: scrape()[is_open] == before[is_open], "the open-socket gauge going down", timeout=8)
    line = access_line(ws_gateway, "ws-obs-1")  # written when the socket ends
    assert {"user": "alice", "path": "/chat/observed", "decision": "allow", "status": 101}.items() <= line.items()
    assert line["bytes"] == len(raw.encode())  # the message bytes sent to the client
    assert "secret=q" not in ws_gateway.log()

    refusal = refused(ws_gateway, "/chat/x")  # no session: refused, with an id all the same
    assert refusal.response.status_code == 401
    line = access_line(ws_gateway, refusal.response.headers["X-Request-ID"])
    assert (line["decision"], line["status"], line["user"]) == ("login", 401, None)
