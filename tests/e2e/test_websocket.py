"""The WebSocket relay through the real gateway, to a real WebSocket upstream (tests/e2e/ws_upstream.py)."""

from __future__ import annotations

import contextlib
import functools
import json
import re
import secrets
import socket
import subprocess
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.client import ClientProtocol
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.extensions.permessage_deflate import ClientPerMessageDeflateFactory
from websockets.frames import Frame, Opcode
from websockets.http11 import Response
from websockets.sync.client import ClientConnection, connect
from websockets.uri import parse_uri

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
    instance.add_users(USERS)
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
        # Two fragments, so the gateway has read all of it when it refuses the last byte. As one
        # frame it is refused on its header while the client is still writing the 4 MiB (which
        # compression used to shrink to a few KB); the server then closes with unread bytes, the
        # kernel answers them with a reset, and the client may never read the close frame.
        socket.send([b"x" * MAX_MESSAGE, b"x"])
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


def stop_reading(ws: ClientConnection) -> None:
    """Let the chatter back up: this client's queue, then the gateway's relay, then its leg to the app."""
    ws.send("chatter")
    assert ws.recv(timeout=5) == "chatter"
    time.sleep(0.5)


def test_a_client_leaving_a_chattering_app_ends_its_relay_at_once(ws_gateway: Gateway, ws_upstream: Upstream,
                                                                   alice: str) -> None:
    # The app keeps sending after the browser went (a kernel's output): the relay's closing handshake
    # with it reads past what it still sends, instead of waiting the upstream client's 10 s close
    # timeout with the app's close frame unread behind it (JupyterLab's kernel sockets did).
    from tests.e2e.test_observability import access_line

    path = f"/chat/chatter-leaving-{secrets.token_hex(4)}"
    request_id = f"ws-chatter-{secrets.token_hex(4)}"
    with open_socket(ws_gateway, path, alice, headers={"X-Request-ID": request_id}, max_queue=1) as ws:
        stop_reading(ws)
        left = time.monotonic()
        ws.socket.shutdown(socket.SHUT_RDWR)  # the tab is gone: no closing handshake from the browser
    line = access_line(ws_gateway, request_id)  # written as the relay ends
    took = time.monotonic() - left
    assert took < 3, f"the relay ended {took:.1f} s after the client left"
    assert line["status"] == 101
    assert upstream_close(ws_upstream, path) is not None  # a closing handshake, not a dropped connection


def test_a_stopping_gateway_closes_its_relays_at_once(make_gateway: Any, ws_upstream: Upstream) -> None:
    # Uvicorn tells every open socket the server is going (1012); the relay closes the app's side at
    # once too, so the gateway exits without waiting out its graceful-shutdown timeout.
    gateway: Gateway = make_gateway(upstream_url=ws_upstream.url)
    path = f"/public/chatter-stopping-{secrets.token_hex(4)}"
    # This client reads everything (a browser does): only the app's side can hold the gateway up.
    with open_socket(gateway, path, max_queue=None) as ws:
        ws.send("chatter")
        assert ws.recv(timeout=5) == "chatter"
        time.sleep(0.3)
        started = time.monotonic()
        gateway.stop()
        took = time.monotonic() - started
    assert took < 5, f"the gateway took {took:.1f} s to stop with a relay open"
    assert upstream_close(ws_upstream, path) == [1012, ""]


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


# --- Memory: compression bombs, and one budget for all relays (issue 10, item 3) ---------------------

MiB = 1024 * 1024
LARGEST = 16 * MiB  # the default websocket_max_message, kept in this gateway as it was attacked
BUDGET = 40 * MiB  # its websocket_memory: two messages of the largest size held, and some room
BOMB_SOCKETS = 24
BOMB_SIZE = 15 * MiB  # inflated: under the 16 MiB limit, as in the attack
BOMBS_PER_SOCKET = 4
RSS_GROWTH_LIMIT = 100 * MiB
ANSWER_LIMIT = 2.0  # seconds for an ordinary request while the bombs land (the attack blocked for > 10 s)


@pytest.fixture(scope="module")
def memory_gateway(ws_upstream: Upstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    instance = write_gateway(tmp_path_factory.mktemp("wsmem"), ws_upstream.url,
                             settings={"upstream": {"websocket_memory": f"{BUDGET // MiB}MiB"}})
    instance.start()
    yield instance
    instance.stop()


@functools.cache
def deflate_bomb() -> bytes:
    """A permessage-deflate payload (RFC 7692: raw deflate, without the 00 00 ff ff that ends the
    flush) inflating to BOMB_SIZE zero bytes from about 15 KB."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, -12)  # a 4 KiB window: what any negotiation allows
    data = b"".join(compressor.compress(bytes(MiB)) for _ in range(BOMB_SIZE // MiB))
    data += compressor.flush(zlib.Z_SYNC_FLUSH)
    assert data.endswith(b"\x00\x00\xff\xff")
    return data[:-4]


@dataclass
class RawSocket:
    """A client socket driven by hand: the handshake made by the websockets library's sans-I/O client,
    then bytes written as given, as an attacker's client may (it need not follow the negotiation)."""

    sock: socket.socket
    protocol: ClientProtocol
    response: Response
    pending: bytes = b""

    @classmethod
    def open(cls, gateway: Gateway, path: str) -> RawSocket:
        protocol = ClientProtocol(parse_uri(f"ws://127.0.0.1:{gateway.port}{path}"), max_size=None,
                                  extensions=[ClientPerMessageDeflateFactory()])  # deflate offered
        sock = socket.create_connection(("127.0.0.1", gateway.port), timeout=10)
        protocol.send_request(protocol.connect())
        sock.sendall(b"".join(protocol.data_to_send()))
        while not (events := protocol.events_received()):
            protocol.receive_data(sock.recv(65536))
        response = events[0]
        assert isinstance(response, Response) and response.status_code == 101, response
        sock.settimeout(None)  # blocking: MSG_DONTWAIT then makes single calls return at once
        return cls(sock, protocol, response)

    def ended(self) -> bool:
        """Whether the gateway has closed the socket; reads what has arrived and never waits."""
        try:
            data = self.sock.recv(1 << 20, socket.MSG_DONTWAIT)
        except BlockingIOError:
            return False
        except OSError:
            return True
        if not data:
            self.protocol.receive_eof()
            return True
        self.protocol.receive_data(data)
        self.protocol.events_received()  # echoes (old code) are dropped, not kept
        return self.protocol.close_rcvd is not None

    def write_some(self, frame: bytes) -> None:
        """Write ``frame`` over and over, as much as the connection takes now (never waits)."""
        while True:
            if not self.pending:
                self.pending = frame
            try:
                sent = self.sock.send(self.pending, socket.MSG_DONTWAIT)
            except BlockingIOError:
                return
            self.pending = self.pending[sent:]


def process_tree(pid: int) -> list[int]:
    """``pid`` and every process below it (the workers, when there are several)."""
    children: dict[int, list[int]] = {}
    for status in Path("/proc").glob("[0-9]*/status"):
        with contextlib.suppress(OSError):
            ppid = re.search(r"^PPid:\s*(\d+)", status.read_text(), re.MULTILINE)
            if ppid:
                children.setdefault(int(ppid.group(1)), []).append(int(status.parent.name))
    tree, todo = [], [pid]
    while todo:
        tree.append(current := todo.pop())
        todo.extend(children.get(current, []))
    return tree


def memory(pids: list[int], field: str) -> int:
    """The sum of a /proc/PID/status memory field (VmRSS now, VmHWM the peak), in bytes."""
    total = 0
    for pid in pids:
        match = re.search(rf"^{field}:\s*(\d+) kB", Path(f"/proc/{pid}/status").read_text(), re.MULTILINE)
        assert match, f"no {field} for process {pid}"
        total += int(match.group(1)) * 1024
    return total


def reset_peak(pids: list[int]) -> None:
    """Start VmHWM again from the current RSS (Linux >= 4.0; without it the peak only overstates)."""
    for pid in pids:
        with contextlib.suppress(OSError), open(f"/proc/{pid}/clear_refs", "w") as handle:
            handle.write("5")


def timed_get(url: str) -> float:
    started = time.monotonic()
    assert httpx.get(url, timeout=30).status_code == 200
    return time.monotonic() - started


def test_compression_bombs_are_refused_and_memory_stays_flat(memory_gateway: Gateway) -> None:
    """24 sockets each send messages of 15 KB on the wire that inflate to 15 MiB: permessage-deflate
    is not negotiated, the compressed frames are a protocol error (1002) and nothing is inflated."""
    gateway = memory_gateway
    assert gateway.process is not None
    pids = process_tree(gateway.process.pid)
    with open_socket(gateway, "/public/warm-up") as warm:  # code loaded lazily is not the attack's doing
        warm.send(bytes(64 * 1024))
        assert warm.recv(timeout=5) == bytes(64 * 1024)
    timed_get(gateway.url + "/public/plain")
    before = memory(pids, "VmRSS")
    reset_peak(pids)

    sockets = [RawSocket.open(gateway, f"/public/bomb-{n}") for n in range(BOMB_SOCKETS)]
    bomb = bytearray(Frame(Opcode.BINARY, deflate_bomb()).serialize(mask=True))
    bomb[0] |= 0x40  # RSV1: "compressed", whatever was negotiated (the library refuses to write it)
    for raw in sockets:
        raw.sock.sendall(bytes(bomb) * BOMBS_PER_SOCKET)
    answers = [timed_get(gateway.url + path) for path in ("/public/plain", "/.gateway/healthz") * 3]

    def settled() -> bool:  # every socket closed, or the memory bound already broken (the old code)
        growth = max(memory(pids, "VmHWM"), memory(pids, "VmRSS")) - before
        return growth > RSS_GROWTH_LIMIT or all(raw.ended() for raw in sockets)

    wait_until(settled, "the bomb sockets to end", timeout=30)
    growth = max(memory(pids, "VmHWM"), memory(pids, "VmRSS")) - before
    answers.append(timed_get(gateway.url + "/public/plain"))
    for raw in sockets:
        raw.sock.close()

    assert growth < RSS_GROWTH_LIMIT, f"the gateway grew by {growth / MiB:.0f} MiB"
    assert max(answers) < ANSWER_LIMIT, f"ordinary requests took up to {max(answers):.1f} s"
    assert not [raw for raw in sockets if "Sec-WebSocket-Extensions" in raw.response.headers]
    assert {raw.protocol.close_rcvd.code if raw.protocol.close_rcvd else None for raw in sockets} == {1002}


def relay_memory(gateway: Gateway) -> tuple[float, float]:
    """The bytes of messages being relayed now, and the sockets closed so far for want of room."""
    from tests.e2e.test_observability import parse

    samples = parse(httpx.get(gateway.url + "/.gateway/metrics", timeout=10).text)
    return (samples[("gateway_websocket_memory_bytes", frozenset())],
            samples[("gateway_websocket_memory_closes_total", frozenset())])


def test_relays_share_one_memory_budget(memory_gateway: Gateway, ws_upstream: Upstream) -> None:
    """Two sockets whose app stopped reading each hold a message of the largest size; a third such
    message, either way, would pass the budget: its socket closes with 1013, and no other socket
    notices."""
    gateway = memory_gateway
    largest = Frame(Opcode.BINARY, bytes(LARGEST)).serialize(mask=True)
    _, closes_before = relay_memory(gateway)
    with open_socket(gateway, "/public/bystander") as bystander:
        bystander.send("hello")
        assert bystander.recv(timeout=5) == "hello"
        stalled = [RawSocket.open(gateway, f"/public/stall-{n}") for n in (1, 2)]
        for held, raw in enumerate(stalled, 1):
            def holding(raw: RawSocket = raw, held: int = held) -> bool:
                raw.write_some(largest)  # until the relay is stuck in the app's write buffer
                return relay_memory(gateway)[0] == held * LARGEST
            wait_until(holding, f"{held} stalled message(s) held by the relay", timeout=10)

        for path, message in (("/public/one-too-many", bytes(LARGEST)),  # from the browser
                              ("/public/one-too-many-down", f"send bytes {LARGEST}")):  # from the app
            with open_socket(gateway, path, max_size=None) as refused_socket:
                refused_socket.send(message)
                closed = wait_for_close(refused_socket)
            assert closed.rcvd is not None and (closed.rcvd.code, closed.rcvd.reason) == (1013, "gateway busy")

        bystander.send(bytes(64 * 1024))  # what fits still goes through
        assert bystander.recv(timeout=5) == bytes(64 * 1024)
        assert not [raw for raw in stalled if raw.ended()]
        assert relay_memory(gateway) == (2 * LARGEST, closes_before + 2)  # the refused messages were never counted

        for raw in stalled:
            raw.sock.close()
        httpx.get(ws_upstream.url + "/_resume", timeout=5)  # the app reads again: the relays finish
        wait_until(lambda: relay_memory(gateway)[0] == 0, "the budget to be given back", timeout=10)
