"""What the second black-box attack on the fixed gateway found (issue 10), each fixed and proven:
trailers without limit, WebSocket handshakes left hanging, 24x head memory, connections kept open
after a refusal, Content_Length, and clients that never read (a trusted proxy's X-Forwarded-Host:
tests/inproc/test_host.py)."""

from __future__ import annotations

import json
import socket
import time
from typing import Any

import httpx
import pytest

from tests.e2e.harness import Gateway
from tests.e2e.test_observability import access_line

PUBLIC = 'rules:\n  - paths: ["/**"]\n    allow: anyone\n'


def closed_by_gateway(sock: socket.socket, deadline: float = 15.0) -> bytes:
    """Everything the gateway sends until it closes the connection (fails if it never does)."""
    sock.settimeout(deadline)
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except ConnectionResetError:
        pass
    return data


@pytest.fixture(scope="module")
def guarded(make_module_gateway: Any) -> Gateway:
    gateway: Gateway = make_module_gateway(policy=PUBLIC, settings={"server": {
        "max_header_size": "16k", "header_timeout": "2s", "body_timeout": "1s"}})
    return gateway


def test_trailers_count_against_the_head_limit(guarded: Gateway) -> None:
    with socket.create_connection(("127.0.0.1", guarded.port), timeout=10) as sock:
        sock.sendall(b"POST /x HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\r\n1\r\na\r\n0\r\n")
        sent, limit = 0, 16 * 1024 * 1024  # the attack took 50 MB (1.2 GiB of memory) on the old code
        try:
            while sent < limit:
                sock.sendall(b"a:b\r\n" * 1000)
                sent += 5000
        except OSError:  # the gateway closed the connection (what is sent meanwhile sits in kernel buffers)
            pass
        assert sent < limit, "the gateway kept taking trailer lines"


def test_a_refusal_closes_a_connection_whose_body_still_dribbles(make_gateway: Any) -> None:
    """Answered 401 while trailer lines (or body bytes) keep coming a few at a time: closed at once."""
    gateway: Gateway = make_gateway(policy='rules:\n  - paths: ["/**"]\n    allow: authenticated\n')
    with socket.create_connection(("127.0.0.1", gateway.port), timeout=10) as sock:
        sock.sendall(b"POST /x HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\r\n1\r\na\r\n0\r\na:b\r\n")
        started = time.monotonic()
        answer = closed_by_gateway(sock)
    assert answer.startswith(b"HTTP/1.1 401 ")
    took = time.monotonic() - started
    assert took < 5, f"the connection stayed open {took:.1f} s after the answer (it took about 10 s before)"


def test_too_many_header_lines_get_431(guarded: Gateway) -> None:
    with socket.create_connection(("127.0.0.1", guarded.port), timeout=10) as sock:
        # The gateway's own page: the demo app would refuse so many headers itself.
        sock.sendall(b"GET /.gateway/healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n" + b"a:b\r\n" * 150 + b"\r\n")
        assert closed_by_gateway(sock).startswith(b"HTTP/1.1 431 ")


@pytest.mark.parametrize("extra", [b"Cookie: " + b"c" * 8300 + b"\r\n", b"X-A: b\r\n" * 120],
                         ids=["long line", "many lines"])
def test_a_handshake_the_websocket_parser_would_refuse_is_answered_and_closed(public_gateway: Gateway,
                                                                             extra: bytes) -> None:
    with socket.create_connection(("127.0.0.1", public_gateway.port), timeout=10) as sock:
        sock.sendall(b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                     b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n" + extra + b"\r\n")
        assert closed_by_gateway(sock).startswith(b"HTTP/1.1 431 ")


def test_a_refused_body_closes_the_connection(guarded: Gateway) -> None:
    """After the 408 for a body that stopped, a byte now and then must not keep the connection."""
    with socket.create_connection(("127.0.0.1", guarded.port), timeout=10) as sock:
        sock.sendall(b"POST /x HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 1000000\r\n\r\nabc")
        answer = closed_by_gateway(sock)
    assert answer.startswith(b"HTTP/1.1 408 ") and b"connection: close" in answer.lower()


def test_underscore_framing_headers_never_reach_the_app(public_gateway: Gateway) -> None:
    with socket.create_connection(("127.0.0.1", public_gateway.port), timeout=10) as sock:
        sock.sendall(b"GET /x HTTP/1.1\r\nHost: 127.0.0.1\r\nContent_Length: 97\r\nTransfer_Encoding: chunked\r\n"
                     b"Connection: close\r\n\r\n")
        answer = closed_by_gateway(sock)
    seen = {name.lower() for name, _ in json.loads(answer.partition(b"\r\n\r\n")[2])["headers"]}
    assert not seen & {"content_length", "content-length", "transfer_encoding", "transfer-encoding"}


def test_a_client_that_never_reads_frees_its_upstream_connection(make_gateway: Any) -> None:
    gateway: Gateway = make_gateway(policy=PUBLIC, settings={
        "server": {"send_timeout": "1s"}, "upstream": {"max_connections": 1, "pool_timeout": "20s"}})
    hog = socket.socket()
    hog.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    hog.connect(("127.0.0.1", gateway.port))
    try:
        hog.sendall(b"GET /big?bytes=50000000 HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Request-ID: never-reads\r\n\r\n")
        # The only upstream connection is freed once the hog has not read for send_timeout.
        response = httpx.get(gateway.url + "/after", timeout=20)
        assert response.status_code == 200
        assert access_line(gateway, "never-reads")["ended"] == "client_timeout"
    finally:
        hog.close()
