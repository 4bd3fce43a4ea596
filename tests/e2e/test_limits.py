"""The request head's limits (size, time) and the cap on clients: what keeps one client from taking
the gateway's memory or file descriptors before the policy is even asked."""

from __future__ import annotations

import socket
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.harness import Gateway, raw_request, wait_until

PUBLIC = 'rules:\n  - paths: ["/**"]\n    allow: anyone\n'


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def read_answer(sock: socket.socket) -> bytes:
    """Everything the gateway sends until it closes the connection."""
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


def push_until_refused(sock: socket.socket, head: bytes, filler: bytes, limit: int) -> bytes:
    """Send ``head`` then ``filler`` up to ``limit`` bytes; return what the gateway answered."""
    sent = 0
    try:
        sock.sendall(head)
        while sent < limit:
            sock.sendall(filler)
            sent += len(filler)
    except OSError:  # the gateway answered and closed while we were still sending
        pass
    try:
        return read_answer(sock)
    except ConnectionResetError:
        return b""


@pytest.fixture(scope="module", params=[1, 2], ids=["1 worker", "2 workers"])
def guarded(make_module_gateway: Any, request: pytest.FixtureRequest) -> Gateway:
    # With several workers each process must apply the configured limits, not the defaults.
    # One gateway per worker count serves the module: no test here changes it.
    gateway: Gateway = make_module_gateway(policy=PUBLIC, settings={"server": {
        "header_timeout": "1s", "max_header_size": "16k", "workers": request.param}})
    if request.param > 1:
        wait_until(lambda: httpx.get(gateway.url + "/x").status_code == 200, "the workers")
    return gateway


def test_a_huge_header_is_refused_with_431_without_taking_memory(guarded: Gateway) -> None:
    assert guarded.process is not None
    before = rss_mib(guarded.process.pid)
    for _ in range(4):
        with socket.create_connection(("127.0.0.1", guarded.port), timeout=10) as sock:
            answer = push_until_refused(sock, b"GET /x HTTP/1.1\r\nHost: a\r\nX-Big: ", b"a" * 65536, 64 << 20)
        assert answer.startswith(b"HTTP/1.1 431") or answer == b""
    assert rss_mib(guarded.process.pid) - before < 16  # 4 x 64 MiB offered; a few KiB kept each
    with socket.create_connection(("127.0.0.1", guarded.port), timeout=10) as sock:
        many = b"".join(b"X-H%d: v\r\n" % i for i in range(3000))  # ~30 KiB of small headers
        sock.sendall(b"GET /x HTTP/1.1\r\nHost: a\r\n" + many + b"\r\n")
        assert read_answer(sock).startswith(b"HTTP/1.1 431")
    assert httpx.get(guarded.url + "/x").status_code == 200  # and the gateway serves on


def test_a_head_over_the_limit_in_one_read_is_refused_and_not_forwarded(guarded: Gateway) -> None:
    headers = b"".join(b"X-A%d: " % i + b"a" * 6000 + b"\r\n" for i in range(4))  # ~24 KiB > 16k, one write
    status, _, body = raw_request(guarded.port, b"GET /x HTTP/1.1\r\nHost: a\r\nConnection: close\r\n" + headers + b"\r\n")
    assert status == 431 and b"X-A0" not in body  # the app never saw it (it would echo the headers)


def test_a_very_long_target_gets_414_not_431(guarded: Gateway) -> None:
    status, _, _ = raw_request(guarded.port, b"GET /" + b"a" * 100_000 + b" HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
    assert status == 414  # the target is what is too long (as for a 9 KiB one); never forwarded


def test_a_head_under_the_limit_passes_with_a_big_body_in_the_same_read(guarded: Gateway) -> None:
    cookie = b"Cookie: big=" + b"c" * 12_000 + b"\r\n"
    body = b"b" * 300_000  # arrives with the head, far over the head limit: not counted
    status, _, answer = raw_request(guarded.port, b"POST /upload HTTP/1.1\r\nHost: a\r\nConnection: close\r\n" + cookie
                                    + b"Content-Length: %d\r\n\r\n" % len(body) + body)
    assert status == 200 and b'"body_length": 300000' in answer


def test_a_slow_head_gets_408_and_an_idle_connection_is_closed(guarded: Gateway) -> None:
    with socket.create_connection(("127.0.0.1", guarded.port), timeout=10) as sock:
        sock.sendall(b"GET /x HTTP/1.1\r\nHost: a\r\n")
        sock.settimeout(0.2)
        answer = b""
        deadline = time.monotonic() + 8
        while not answer and time.monotonic() < deadline:  # a header line every 0.2 s: slowloris
            try:
                sock.sendall(b"X-Drip: 1\r\n")
                answer = sock.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                break
    assert answer.startswith(b"HTTP/1.1 408")
    with socket.create_connection(("127.0.0.1", guarded.port), timeout=10) as idle:
        assert idle.recv(1) == b""  # closed by the gateway after header_timeout (else recv times out)


def test_beyond_max_clients_new_requests_get_503(make_gateway: Any) -> None:
    gateway: Gateway = make_gateway(policy=PUBLIC, settings={"server": {"max_clients": 4, "header_timeout": "30s"}})
    with ExitStack() as stack:
        for _ in range(4):
            stack.enter_context(socket.create_connection(("127.0.0.1", gateway.port), timeout=10))
        status, _, _ = raw_request(gateway.port, b"GET /x HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        assert status == 503
    # Once the idle connections are gone from the server's count, requests are served again.
    wait_until(lambda: httpx.get(gateway.url + "/x").status_code == 200, "requests served again", timeout=10)
