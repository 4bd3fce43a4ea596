"""Pipelined requests: at most one request per connection is parsed ahead of the answer being
written, so a client that pipelines without reading answers holds a bounded amount of memory."""

from __future__ import annotations

import socket
import threading
import time

import httpx

from tests.e2e.harness import Gateway
from tests.e2e.test_limits import rss_mib

CONNECTIONS = 10
REQUESTS = 100_000
PUSH_FOR = 2.0  # seconds each attacker keeps pushing pipelined requests


def pipeline(port: int, path: bytes, results: list[int], measured: threading.Event) -> None:
    request = b"GET " + path + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    block = request * 1000
    sock = socket.create_connection(("127.0.0.1", port), timeout=0.5)
    sent = 0
    deadline = time.monotonic() + PUSH_FOR
    try:
        while sent < REQUESTS and time.monotonic() < deadline:
            try:
                sock.sendall(block)
                sent += 1000
            except TimeoutError:
                continue  # the gateway stopped reading: our buffers are full
            except OSError:
                break
        results.append(sent)
        measured.wait(30)  # hold the connection until the measurements are taken
    finally:
        sock.close()


def test_pipelined_floods_hold_bounded_memory(public_gateway: Gateway) -> None:
    gateway = public_gateway
    assert gateway.process is not None
    with httpx.Client(base_url=gateway.url, timeout=10) as client:
        for _ in range(20):  # warm: the pool, the caches, the allocator
            assert client.get("/warm").status_code == 200
        before = rss_mib(gateway.process.pid)
        sent: list[int] = []
        measured = threading.Event()
        attackers = [threading.Thread(target=pipeline, args=(gateway.port, f"/p{n}".encode(), sent, measured))
                     for n in range(CONNECTIONS)]
        for thread in attackers:
            thread.start()
        while len(sent) < CONNECTIONS:  # every attacker has pushed for PUSH_FOR seconds
            threading.Event().wait(0.05)
        started = time.perf_counter()
        response = client.get("/normal")
        took = time.perf_counter() - started
        grown = rss_mib(gateway.process.pid) - before
        measured.set()
        for thread in attackers:
            thread.join()
    print(f"pipelined requests pushed: {sum(sent)}; RSS +{grown:.1f} MiB; a normal request took {took * 1000:.0f} ms")
    assert response.status_code == 200
    assert grown < 50, f"RSS grew {grown:.0f} MiB under pipelining"
    # Generous against a busy machine; unbounded parsing took about 10 s here.
    assert took < 2.0, f"a normal request took {took:.1f} s"


def test_pipelined_requests_are_all_answered_in_order(public_gateway: Gateway) -> None:
    """Bounding the parse-ahead must not lose or reorder requests, bodies included."""
    gateway = public_gateway
    requests = b"".join(
        b"POST /echo-" + str(n).encode() + b" HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 4\r\n\r\nab\r\n"
        if n % 3 == 0 else b"GET /n-" + str(n).encode() + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
        for n in range(60)
    ) + b"GET /last HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    with socket.create_connection(("127.0.0.1", gateway.port), timeout=10) as sock:
        sock.sendall(requests)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    assert data.count(b"HTTP/1.1 200 ") == 61
    # The demo app names the path it served: each answer is for the request at its place.
    paths = [f"/echo-{n}" if n % 3 == 0 else f"/n-{n}" for n in range(60)] + ["/last"]
    positions = [data.find(f'"{path}"'.encode()) for path in paths]
    assert all(p >= 0 for p in positions) and positions == sorted(positions)
