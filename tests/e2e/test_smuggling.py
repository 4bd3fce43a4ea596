"""Request smuggling through the gateway, tried against real upstream servers that answer without
reading the request body (Uvicorn with httptools, Uvicorn with h11, Node's http server).

The gateway keeps a pool of upstream connections; here it has ONE, so every request reuses the
connection the previous one used. If the gateway ever forwarded a request whose body it had not
read itself (an upgrade request declaring a body llhttp never parses), the app would wait for
those bytes and read the next request's head as them: the bytes after it, chosen by the attacker,
would become a request the policy never saw. Each test proves that no such request ever reaches
the app, and that innocent requests after a poison attempt are answered normally.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.e2e.harness import PYTHON, Gateway, free_port, port_open, wait_until, write_gateway

HERE = Path(__file__).parent / "upstreams"
KINDS = ("uvicorn-httptools", "uvicorn-h11", "node")


@dataclass
class Careless:
    kind: str
    port: int
    log: Path
    process: subprocess.Popen[bytes]

    def seen(self) -> list[dict[str, str | None]]:
        if not self.log.exists():
            return []
        return [json.loads(line) for line in self.log.read_text().splitlines() if line]


def start_careless(kind: str, folder: Path) -> Careless:
    port = free_port()
    log = folder / f"{kind}.log"
    env = {**os.environ, "CARELESS_LOG": str(log)}
    if kind == "node":
        node = shutil.which("node")
        if node is None:
            pytest.skip("Node.js is not installed: the Node upstream cannot run (the Uvicorn ones do)")
        command = [node, str(HERE / "careless.js"), str(port)]
    else:
        command = [PYTHON, str(HERE / "careless.py"), "--port", str(port), "--http", kind.split("-")[1]]
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_until(lambda: port_open(port), f"{kind} upstream")
    return Careless(kind, port, log, process)


@pytest.fixture(scope="module", params=KINDS)
def target(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Gateway, Careless]]:
    folder = tmp_path_factory.mktemp("smuggle")
    upstream = start_careless(request.param, folder)
    # One upstream connection: each request reuses the one the request before it used.
    gateway = write_gateway(folder / "gw", f"http://127.0.0.1:{upstream.port}",
                            settings={"upstream": {"max_connections": 1, "read_timeout": "5s"}})
    gateway.start()
    yield gateway, upstream
    gateway.stop()
    upstream.process.terminate()
    upstream.process.wait(10)


SMUGGLED = b"GET /admin/secret HTTP/1.1\r\nHost: x\r\nX-Forwarded-User: admin\r\nX-Forwarded-Roles: admin\r\n\r\n"


def exchange(port: int, data: bytes, *, timeout: float = 8.0) -> bytes:
    """Send ``data`` on a new connection and read until the gateway closes it or goes quiet."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(data)
        received = b""
        try:
            while chunk := sock.recv(65536):
                received += chunk
        except TimeoutError:
            pass
    return received


def status_of(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/1.1 ") else 0


def carrier(path: bytes) -> bytes:
    """An anonymous POST to a public path whose body is a complete forged request."""
    return (b"POST " + path + b" HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: text/plain\r\nConnection: close\r\n"
            b"Content-Length: " + str(len(SMUGGLED)).encode() + b"\r\n\r\n" + SMUGGLED)


def innocents_answered(gateway: Gateway, count: int = 3) -> None:
    with httpx.Client(base_url=gateway.url, timeout=8) as client:
        for n in range(count):
            response = client.get(f"/public/innocent-{n}")
            assert response.status_code == 200, response.text
            assert response.json()["path"] == f"/public/innocent-{n}"


def assert_nothing_smuggled(upstream: Careless, before: int) -> None:
    for record in upstream.seen()[before:]:
        assert record["path"] not in ("/admin/secret", "/internal/x"), f"smuggled request reached {upstream.kind}"
        assert record["user"] is None, f"a forged identity reached {upstream.kind}: {record}"


def test_the_carrier_exploit_never_reaches_the_app(target: tuple[Gateway, Careless]) -> None:
    gateway, upstream = target
    before = len(upstream.seen())
    # The attacker learns how long the carrier's head is when it reaches the app...
    probe = exchange(gateway.port, carrier(b"/public/b"))
    assert status_of(probe) == 200
    head_length = json.loads(probe.partition(b"\r\n\r\n")[2])["head_length"]
    # ...then declares exactly that many body bytes on an upgrade request that carries none,
    poison = (b"POST /public/a HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: Upgrade\r\nUpgrade: foo\r\n"
              b"Content-Length: " + str(head_length).encode() + b"\r\n\r\n")
    answer = exchange(gateway.port, poison, timeout=3)
    # ...so that the carrier's head would be eaten as that body and its own body parsed as a request.
    second = exchange(gateway.port, carrier(b"/public/b"))
    assert_nothing_smuggled(upstream, before)
    assert b"/admin/secret" not in second
    assert status_of(answer) == 400, answer[:200]
    assert status_of(second) == 200 and json.loads(second.partition(b"\r\n\r\n")[2])["path"] == "/public/b"
    assert all(record["path"] != "/public/a" for record in upstream.seen()[before:])
    innocents_answered(gateway)


VARIANTS = [
    pytest.param(method, upgrade, framing, id=f"{method.decode()}-{upgrade.decode()}-{framing}")
    for method in (b"POST", b"GET")
    for upgrade in (b"foo", b"h2c", b"TLS/1.2", b"websocket")
    for framing in ("length", "chunked")
]


@pytest.mark.parametrize(("method", "upgrade", "framing"), VARIANTS)
def test_an_upgrade_with_a_body_is_refused_and_never_forwarded(
    target: tuple[Gateway, Careless], method: bytes, upgrade: bytes, framing: str
) -> None:
    gateway, upstream = target
    before = len(upstream.seen())
    head = (method + b" /public/poison HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: Upgrade\r\nUpgrade: " + upgrade
            + b"\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n")
    if framing == "length":
        request = head + b"Content-Length: " + str(len(SMUGGLED)).encode() + b"\r\n\r\n" + SMUGGLED
    else:
        request = head + b"Transfer-Encoding: chunked\r\n\r\n" + f"{len(SMUGGLED):x}\r\n".encode() + SMUGGLED + b"\r\n0\r\n\r\n"
    answer = exchange(gateway.port, request, timeout=3)
    assert status_of(answer) == 400, answer[:300]
    innocents_answered(gateway)
    assert_nothing_smuggled(upstream, before)
    assert [record["path"] for record in upstream.seen()[before:]] == [f"/public/innocent-{n}" for n in range(3)]


def test_fire_and_forget_upgrades_hold_no_upstream_connection(target: tuple[Gateway, Careless]) -> None:
    """The attacker sends upgrade heads with a declared body and never reads the answers."""
    gateway, upstream = target
    before = len(upstream.seen())
    sockets = []
    try:
        for n in range(20):
            sock = socket.create_connection(("127.0.0.1", gateway.port), timeout=5)
            sock.sendall(b"POST /public/ff-" + str(n).encode() + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                         b"Connection: Upgrade\r\nUpgrade: h2c\r\nContent-Length: 100\r\n\r\n")
            sockets.append(sock)
        innocents_answered(gateway)
    finally:
        for sock in sockets:
            sock.close()
    assert_nothing_smuggled(upstream, before)
    assert not any(str(record["path"]).startswith("/public/ff-") for record in upstream.seen()[before:])


def test_an_upgrade_without_a_body_is_served_as_plain_http(target: tuple[Gateway, Careless]) -> None:
    """curl --http2 over http asks for h2c on a GET: answered as HTTP/1.1, upgrade dropped, then closed."""
    gateway, upstream = target
    before = len(upstream.seen())
    answer = exchange(gateway.port, b"GET /public/h2c HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: Upgrade, HTTP2-Settings\r\n"
                                    b"Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n" + SMUGGLED)
    assert status_of(answer) == 200
    assert answer.count(b"HTTP/1.1 ") == 1, "the bytes after an upgrade head were parsed as a request"
    assert [record["path"] for record in upstream.seen()[before:]] == ["/public/h2c"]
    innocents_answered(gateway)


def test_a_body_cut_short_never_leaves_the_connection_waiting(target: tuple[Gateway, Careless]) -> None:
    """Half of a long body (made of forged requests) arrives, then the client leaves: the upstream
    connection that was sent a length it never got in full is closed, not reused."""
    gateway, upstream = target
    before = len(upstream.seen())
    filler = SMUGGLED * (100_000 // len(SMUGGLED))
    with socket.create_connection(("127.0.0.1", gateway.port), timeout=5) as sock:
        sock.sendall(b"POST /public/cut HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 400000\r\n\r\n" + filler)
        sock.recv(65536)  # the careless app answers before it has the body
    innocents_answered(gateway)
    assert_nothing_smuggled(upstream, before)
