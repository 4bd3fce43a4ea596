"""Request bodies that never come, or come a byte at a time, and clients that hold many requests:
none of them may take the upstream pool from everybody else.

The attacker is 127.0.0.1; the other clients connect from 127.0.0.2 (the whole of 127/8 is this
machine), so the per-client share and the other clients' experience can be told apart.
"""

from __future__ import annotations

import asyncio
import json
import socket
import statistics
import time
from collections.abc import Iterator
from contextlib import ExitStack
from typing import Any

import httpx
import pytest

from tests.e2e.harness import Gateway, wait_until

PUBLIC = 'rules:\n  - paths: ["/**"]\n    allow: anyone\n'
OTHER_CLIENT = "127.0.0.2"


def other_client(gateway: Gateway) -> httpx.Client:
    transport = httpx.HTTPTransport(local_address=OTHER_CLIENT)
    return httpx.Client(base_url=gateway.url, transport=transport, timeout=20)


def stalled(port: int, path: bytes, declared: int = 1000, sent: bytes = b"") -> socket.socket:
    """A request that declares a body and sends ``sent`` of it, then nothing."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=20)
    sock.sendall(b"POST " + path + b" HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: text/plain\r\n"
                 b"Content-Length: " + str(declared).encode() + b"\r\n\r\n" + sent)
    return sock


def answer(sock: socket.socket) -> bytes:
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
            if b"\r\n\r\n" in data:
                break
    except (TimeoutError, ConnectionResetError):
        pass
    return data


@pytest.fixture(params=[1, 2], ids=["1 worker", "2 workers"])
def small_pool(make_gateway: Any, request: pytest.FixtureRequest) -> Iterator[Gateway]:
    gateway: Gateway = make_gateway(policy=PUBLIC, settings={
        "server": {"workers": request.param},
        "upstream": {"max_connections": 10, "pool_timeout": "2s"},
    })
    if request.param > 1:
        wait_until(lambda: httpx.get(gateway.url + "/x").status_code == 200, "the workers")
    yield gateway


def test_stalled_bodies_leave_other_clients_served(small_pool: Gateway) -> None:
    """400 requests that declare a body and never send it hold no upstream connection."""
    with ExitStack() as stack:
        for n in range(400):
            stack.enter_context(stalled(small_pool.port, f"/stall-{n}".encode()))
        latencies = []
        with other_client(small_pool) as client:
            for n in range(60):
                started = time.perf_counter()
                response = client.post(f"/fine-{n}", content=b"x" * 100)
                latencies.append(time.perf_counter() - started)
                assert response.status_code == 200, response.text
                assert response.json()["body_length"] == 100
    p99 = statistics.quantiles(latencies, n=100)[98]
    print(f"other clients under 400 stalled bodies: p50 {statistics.median(latencies) * 1000:.1f} ms, "
          f"p99 {p99 * 1000:.1f} ms")


def test_a_body_that_stops_is_cut_with_408(make_gateway: Any) -> None:
    gateway: Gateway = make_gateway(policy=PUBLIC, settings={"server": {"body_timeout": "1s"}})
    with stalled(gateway.port, b"/half", declared=1000, sent=b"a" * 400) as sock:
        started = time.monotonic()
        data = answer(sock)
    assert data.startswith(b"HTTP/1.1 408 "), data[:200]
    assert time.monotonic() - started < 10


def test_a_body_sent_a_byte_at_a_time_is_cut_with_408(make_gateway: Any) -> None:
    """Never idle for body_timeout, but far below body_min_rate."""
    gateway: Gateway = make_gateway(policy=PUBLIC, settings={"server": {"body_timeout": "1s", "body_min_rate": "1k"}})
    sock = stalled(gateway.port, b"/drip", declared=100_000)
    sock.settimeout(0.3)
    data = b""
    with sock:
        for _ in range(100):  # at most 30 s
            try:
                sock.sendall(b"a")
            except OSError:
                break
            try:
                data += sock.recv(65536)  # the client's pace: one byte every 0.3 s unless answered
            except TimeoutError:
                continue
            if b"\r\n\r\n" in data:
                break
    assert data.startswith(b"HTTP/1.1 408 "), data[:200]


def test_one_client_gets_only_its_share_of_the_pool(make_gateway: Any) -> None:
    gateway: Gateway = make_gateway(policy=PUBLIC, settings={
        "upstream": {"max_connections": 10, "max_connections_per_client": 3, "pool_timeout": "10s"}})

    async def hog() -> list[int]:
        limits = httpx.Limits(max_connections=20, max_keepalive_connections=0)
        async with httpx.AsyncClient(base_url=gateway.url, limits=limits, timeout=20) as client:
            async def slow() -> int:
                return (await client.get("/slow", params={"sleep": "1"})).status_code

            hogs = [asyncio.ensure_future(slow()) for _ in range(10)]
            # Meanwhile another client is served at once: the hog's share is 3 of the 10.
            loop = asyncio.get_running_loop()
            with other_client(gateway) as other:
                fine = await loop.run_in_executor(None, lambda: other.get("/fine").status_code)
            assert fine == 200
            return list(await asyncio.gather(*hogs))

    statuses = asyncio.run(hog())
    assert statuses.count(200) == 3 and statuses.count(429) == 7, statuses


@pytest.mark.parametrize("method", [b"GET", b"HEAD"])
def test_a_get_or_head_with_a_body_is_refused(public_gateway: Gateway, method: bytes) -> None:
    gateway = public_gateway
    with socket.create_connection(("127.0.0.1", gateway.port), timeout=10) as sock:
        sock.sendall(method + b" /x HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello")
        data = answer(sock)
    assert data.startswith(b"HTTP/1.1 400 "), data[:200]


def test_the_body_is_reframed_by_the_gateway(public_gateway: Gateway) -> None:
    """A length written "004" reaches the app as 4; a chunked body arrives chunked, whole."""
    gateway = public_gateway
    with socket.create_connection(("127.0.0.1", gateway.port), timeout=10) as sock:
        sock.sendall(b"POST /x HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 004\r\nConnection: close\r\n\r\nabcd")
        data = answer(sock) + sock.recv(65536)
    assert data.startswith(b"HTTP/1.1 200 "), data[:200]
    seen = json.loads(data.partition(b"\r\n\r\n")[2])
    assert [value for name, value in seen["headers"] if name.lower() == "content-length"] == ["4"]
    assert seen["body_length"] == 4
    with httpx.Client(base_url=gateway.url, timeout=10) as client:
        seen = client.post("/y", content=iter([b"ab", b"cde"])).json()
    assert seen["body_length"] == 5
    headers = {name.lower(): value for name, value in seen["headers"]}
    assert headers.get("transfer-encoding") == "chunked" and "content-length" not in headers
