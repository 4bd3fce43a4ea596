"""Streaming robustness of the proxied path: back-pressure both ways, large bodies, the body limit,
idle (not total) timeouts, and floods against dead, silent and slow upstreams.

Memory is the gateway process's own (VmRSS/VmHWM from /proc); "ahead" is what the upstream has
written (or the client has sent) beyond what the other end has taken, which only kernel socket
buffers and the gateway's small fixed buffers may hold.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import hashlib
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.harness import Gateway, free_port, wait_until
from tests.e2e.stubs import BLOCK, Stub, counting, deaf, download, pattern_sha256, slow_reader

MiB = 1024 * 1024
RSS_GROWTH_LIMIT = 64 * 1000 * 1000  # "less than 64 MB"
AHEAD_LIMIT = 64 * MiB


def proc_status(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
    raise KeyError(key)


class Memory:
    """The gateway's peak resident memory over a stretch, against its resident memory at the start."""

    def __init__(self, gateway: Gateway) -> None:
        assert gateway.process is not None
        self.pid = gateway.process.pid
        # Writing 5 to clear_refs resets VmHWM to the current RSS, so the peak seen later is this
        # stretch's. Where that is not allowed the start-up peak stays in: stricter, never laxer.
        with contextlib.suppress(OSError):
            Path(f"/proc/{self.pid}/clear_refs").write_text("5")
        self.start = proc_status(self.pid, "VmRSS")

    def growth(self) -> int:
        return proc_status(self.pid, "VmHWM") - self.start


def open_fds(gateway: Gateway) -> int:
    assert gateway.process is not None
    return len(list(Path(f"/proc/{gateway.process.pid}/fd").iterdir()))


def stable(read: Callable[[], int], window: float = 1.5) -> int:
    """Poll until ``read()`` stops changing for ``window`` seconds (the pipeline is full), return it."""
    value, since = read(), time.monotonic()
    deadline = since + 20
    while time.monotonic() < deadline:
        time.sleep(0.1)
        now = read()
        if now != value:
            value, since = now, time.monotonic()
        elif time.monotonic() - since >= window:
            return value
    raise TimeoutError("never settled")


@pytest.fixture
def stub() -> Iterator[Callable[..., Stub]]:
    made: list[Stub] = []

    def make(serve: Any) -> Stub:
        made.append(Stub(serve))
        return made[-1]

    yield make
    for instance in made:
        instance.close()


class RawDownload:
    """A GET read by hand over a socket with a small receive buffer, so the test decides when to read."""

    def __init__(self, port: int, target: str) -> None:
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        self.sock.settimeout(30)
        self.sock.connect(("127.0.0.1", port))
        self.sock.sendall(f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode())
        buffer = b""
        while b"\r\n\r\n" not in buffer:
            buffer += self.sock.recv(65536)
        head, _, rest = buffer.partition(b"\r\n\r\n")
        self.status = int(head.split(b" ")[1])
        self.headers = {k.strip().lower(): v.strip() for k, _, v in
                        (line.partition(b":") for line in head.split(b"\r\n")[1:])}
        self.digest = hashlib.sha256(rest)
        self.received = len(rest)

    def read(self, upto: int) -> None:
        while self.received < upto:
            chunk = self.sock.recv(min(1 << 20, upto - self.received))
            if not chunk:
                return
            self.digest.update(chunk)
            self.received += len(chunk)

    def close(self) -> None:
        self.sock.close()


def test_slow_client_holds_back_the_upstream_and_then_gets_everything(make_gateway: Any, stub: Any) -> None:
    size = 512 * MiB
    upstream = stub(download(size, stall_after=size))
    # A 1 s read timeout: the client's stall, far longer, must not count as upstream silence.
    gateway = make_gateway(upstream_url=upstream.url, settings={"upstream": {"read_timeout": "1s"}})
    memory = Memory(gateway)
    client = RawDownload(gateway.port, "/public/big")
    try:
        assert client.status == 200 and client.headers[b"content-length"] == str(size).encode()
        client.read(4 * MiB)
        written = stable(lambda: upstream.written)  # the client stopped reading: everything stops
        print(f"stalled download: upstream wrote {written / MiB:.1f} MiB, client read {client.received / MiB:.1f} MiB,"
              f" gateway RSS +{memory.growth() / MiB:.1f} MiB")
        assert written - client.received < AHEAD_LIMIT, (written, client.received)
        assert written < size // 4
        assert memory.growth() < RSS_GROWTH_LIMIT, memory.growth()
        client.read(size)
    finally:
        client.close()
    assert client.received == size
    assert client.digest.hexdigest() == pattern_sha256(size)
    assert memory.growth() < RSS_GROWTH_LIMIT, memory.growth()


def test_slow_upstream_holds_back_the_client_and_then_gets_everything(make_gateway: Any, stub: Any) -> None:
    size = 512 * MiB
    upstream = stub(slow_reader(stall_after=4 * MiB))
    gateway = make_gateway(upstream_url=upstream.url, settings={"upstream": {"read_timeout": "1s"}})
    memory = Memory(gateway)
    sent = 0

    def body() -> Iterator[bytes]:
        nonlocal sent
        while sent < size:
            yield BLOCK
            sent += len(BLOCK)

    with concurrent.futures.ThreadPoolExecutor(1) as pool, httpx.Client(timeout=60) as client:
        upload = pool.submit(client.post, gateway.url + "/public/upload", content=body())
        held = stable(lambda: sent)  # the upstream stopped reading: the client is held back too
        print(f"stalled upload: client sent {held / MiB:.1f} MiB, upstream read {upstream.read / MiB:.1f} MiB,"
              f" gateway RSS +{memory.growth() / MiB:.1f} MiB")
        assert held - upstream.read < AHEAD_LIMIT, (held, upstream.read)
        assert held < size // 4
        assert memory.growth() < RSS_GROWTH_LIMIT, memory.growth()
        upstream.go_on.set()
        response = upload.result(60)
    assert response.status_code == 200, response.text
    assert response.json() == {"body_length": size, "body_sha256": pattern_sha256(size)}
    assert memory.growth() < RSS_GROWTH_LIMIT, memory.growth()


# 1 GiB each way took 7-14 s here (gateway start included, the machine shared), too long for one
# test: the suite streams 256 MiB each way, bench/proxy_bench.py the full 1 GiB.
BIG = 256 * MiB


def test_big_bodies_both_ways_through_the_demo_app(make_gateway: Any) -> None:
    gateway = make_gateway()
    memory = Memory(gateway)
    started = time.monotonic()
    digest, received = hashlib.sha256(), 0
    with gateway.client() as client:
        with client.stream("GET", "/public/big", params={"bytes": str(BIG)}) as response:
            assert response.status_code == 200
            for chunk in response.iter_raw(1 << 20):
                digest.update(chunk)
                received += len(chunk)
        assert received == BIG and digest.hexdigest() == pattern_sha256(BIG)
        down = time.monotonic() - started

        def body() -> Iterator[bytes]:
            for _ in range(BIG // len(BLOCK)):
                yield BLOCK

        seen = client.post("/public/upload", content=body()).json()
    assert seen["body_length"] == BIG and seen["body_sha256"] == pattern_sha256(BIG)
    print(f"{BIG // MiB} MiB down in {down:.1f} s, up in {time.monotonic() - started - down:.1f} s,"
          f" gateway RSS +{memory.growth() / MiB:.1f} MiB")
    assert memory.growth() < RSS_GROWTH_LIMIT, memory.growth()


def raw_exchange(port: int, head: bytes, body: bytes = b"") -> tuple[int, bytes]:
    """Send a request's bytes as given and read the answer's status line and body."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(head + body)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    status_line, _, rest = data.partition(b"\r\n")
    return int(status_line.split(b" ")[1]), rest.partition(b"\r\n\r\n")[2]


def chunked(total: int, piece: int = 64 * 1024) -> bytes:
    out = b""
    while total > 0:
        size = min(piece, total)
        out += f"{size:x}\r\n".encode() + b"x" * size + b"\r\n"
        total -= size
    return out + b"0\r\n\r\n"


def test_a_declared_body_over_max_body_size_is_refused_before_forwarding(make_gateway: Any, stub: Any) -> None:
    upstream = stub(slow_reader(stall_after=1 << 62))
    gateway = make_gateway(upstream_url=upstream.url, settings={"server": {"max_body_size": "1m"}})
    # Only the head is sent: the gateway must answer from the declared length alone.
    status, body = raw_exchange(gateway.port, b"POST /public/up HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                                              b"Content-Length: 1048577\r\nConnection: close\r\n\r\n")
    assert status == 413 and json.loads(body)["error"] == "payload_too_large"
    assert upstream.accepted == 0  # not even a connection
    with gateway.client() as client:  # at the limit it passes
        seen = client.post("/public/up", content=b"y" * MiB).json()
    assert seen["body_length"] == MiB and upstream.requests == 1


def test_a_chunked_body_growing_past_max_body_size_is_cut_off(make_gateway: Any, stub: Any) -> None:
    upstream = stub(slow_reader(stall_after=1 << 62))
    gateway = make_gateway(upstream_url=upstream.url, settings={"server": {"max_body_size": "1m"}})
    head = b"POST /public/up HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    status, body = raw_exchange(gateway.port, head, chunked(MiB + 1000))
    assert status == 413 and json.loads(body)["error"] == "payload_too_large"
    # The upstream got at most the start of the request (how much depends on timing), then the
    # connection was cut: never a complete request.
    wait_until(lambda: upstream.open == 0, "the upstream connection closing", timeout=5)
    assert upstream.requests <= 1 and upstream.read <= MiB
    status, body = raw_exchange(gateway.port, head, chunked(MiB))  # at the limit it passes
    assert status == 200 and json.loads(body)["body_length"] == MiB


def test_no_limit_by_default_far_beyond_quarts_16_mib(alice: httpx.Client) -> None:
    # Proxied bodies never pass through Quart: its MAX_CONTENT_LENGTH (16 MiB) does not apply.
    seen = alice.post("/upload", content=b"z" * (40 * MiB), headers={"Content-Type": "application/octet-stream"})
    assert seen.status_code == 200 and seen.json()["body_length"] == 40 * MiB


def test_read_timeout_is_an_idle_timeout_not_a_total_one(make_gateway: Any) -> None:
    gateway = make_gateway(settings={"upstream": {"read_timeout": "1s"}})
    with gateway.client() as client:
        # ~1.8 s in all, almost twice the limit, never silent for 1 s: must arrive whole.
        with client.stream("GET", "/public/events", params={"chunks": "6", "every": "0.3"}) as response:
            assert response.status_code == 200
            text = b"".join(response.iter_raw()).decode()
        assert [line.split()[1] for line in text.split("\n\n") if line] == [str(i) for i in range(6)]

        # An upload that takes ~1.8 s (the app is silent until it has it all) is not cut either.
        def slow_body() -> Iterator[bytes]:
            for _ in range(6):
                yield b"a" * 1000
                time.sleep(0.3)  # the client's pace: what is under test

        seen = client.post("/public/upload", content=slow_body()).json()
        assert seen["body_length"] == 6_000
        # Silence is still cut.
        assert client.get("/public/slow", params={"sleep": "2"}).status_code == 504


async def flood(gateway: Gateway, count: int, path: str = "/public/flood") -> tuple[list[int], list[int]]:
    """``count`` requests at once, each on its own connection, with health checks among them: the
    statuses of both (a request that got no answer in 20 s fails the test)."""
    limits = httpx.Limits(max_connections=count + 10, max_keepalive_connections=0)
    async with httpx.AsyncClient(base_url=gateway.url, limits=limits, timeout=20) as client:
        async def one(target: str) -> int:
            return (await client.get(target)).status_code

        requests = [asyncio.ensure_future(one(path)) for _ in range(count)]
        health = []
        for _ in range(5):  # while the flood is in flight
            health.append(await one("/.gateway/healthz"))
        return list(await asyncio.gather(*requests)), health


def test_a_flood_against_a_dead_upstream_gets_502s_and_the_gateway_keeps_answering(make_gateway: Any) -> None:
    # Every request comes from this one address: the per-client share of the pool is lifted here,
    # so each request really goes to the dead upstream (tests/e2e/test_starvation.py tests the share).
    gateway = make_gateway(upstream_url=f"http://127.0.0.1:{free_port()}",
                           settings={"upstream": {"max_connections_per_client": 0}})
    statuses, health = asyncio.run(flood(gateway, 500))
    assert statuses == [502] * 500
    assert health == [200] * 5
    with gateway.client() as client:
        assert client.get("/.gateway/healthz").status_code == 200


def test_a_black_hole_upstream_exhausts_a_small_pool_without_sinking_the_gateway(make_gateway: Any, stub: Any) -> None:
    upstream = stub(counting(0))
    upstream.answering = False  # accepts, reads the request, never says a word
    gateway = make_gateway(upstream_url=upstream.url, settings={"upstream": {
        "max_connections": 4, "pool_timeout": "1s", "connect_timeout": "1s", "read_timeout": "1s",
        "max_connections_per_client": 0}})  # one client address here: the pool itself is under test
    before = open_fds(gateway)
    peak, stop = [before], threading.Event()

    def watch() -> None:
        while not stop.wait(0.05):
            peak.append(open_fds(gateway))

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        statuses, health = asyncio.run(flood(gateway, 100))
    finally:
        stop.set()
        watcher.join()
    print(f"black hole: statuses {sorted(set(statuses))}, gateway fds {before} -> peak {max(peak)},"
          f" upstream saw {upstream.accepted} connections")
    assert set(statuses) <= {503, 504} and len(statuses) == 100
    assert 503 in statuses  # the waiters beyond the pool are told the gateway is busy
    assert health == [200] * 5
    # One per client connection plus at most the pool's: nothing piles up behind a silent app.
    assert max(peak) <= before + 100 + 4 + 16
    wait_until(lambda: open_fds(gateway) <= before + 4, "the gateway's descriptors going back down", timeout=10)
    # The app comes back: the pool recovers.
    upstream.answering = True
    statuses, health = asyncio.run(flood(gateway, 20))
    assert statuses == [200] * 20 and health == [200] * 5


def test_the_upstream_pool_is_bounded(make_gateway: Any, stub: Any) -> None:
    upstream = stub(counting(0.2))
    gateway = make_gateway(upstream_url=upstream.url, settings={"upstream": {
        "max_connections": 4, "pool_timeout": "20s", "max_connections_per_client": 0}})
    statuses, _ = asyncio.run(flood(gateway, 40))
    assert statuses == [200] * 40
    assert upstream.max_busy == 4  # used in full, never beyond
    assert upstream.accepted <= 4  # and kept alive, not reopened


def test_an_upstream_that_stops_taking_the_body_gets_a_write_timeout(make_gateway: Any, stub: Any) -> None:
    upstream = stub(deaf)
    gateway = make_gateway(upstream_url=upstream.url, settings={"upstream": {"write_timeout": "1s", "max_connections": 1}})
    with socket.create_connection(("127.0.0.1", gateway.port), timeout=15) as sock:
        sock.sendall(b"POST /public/up HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 67108864\r\n\r\n")

        def send_body() -> None:
            with contextlib.suppress(OSError):  # the gateway hangs up once it has answered
                for _ in range(64 * MiB // len(BLOCK)):
                    sock.sendall(BLOCK)

        sender = threading.Thread(target=send_body, daemon=True)
        sender.start()
        status_line = sock.recv(65536).split(b"\r\n")[0]
    assert status_line.split(b" ")[1] == b"504", status_line
    assert upstream.requests == 1
    # The stalled request's slot is free again: the pool's only connection serves the next one.
    upstream.go_on.set()
    with gateway.client() as client:
        assert client.post("/public/up", content=b"small").status_code == 200


@pytest.mark.parametrize("status", [204, 304])
def test_a_bodiless_answer_with_a_content_length_keeps_the_browser_connection(
    make_gateway: Any, stub: Callable[..., Stub], status: int
) -> None:
    """RFC 9110 lets a 304 carry the representation's Content-Length; there is still no body."""

    def serve(upstream: Stub, conn: Any) -> None:
        while conn.head() is not None:
            conn.sock.sendall(f"HTTP/1.1 {status} X\r\nContent-Length: 5\r\nETag: \"v1\"\r\n\r\n".encode())

    app = stub(serve)
    gateway = make_gateway(upstream_url=app.url, policy='rules:\n  - paths: ["/**"]\n    allow: anyone\n')
    with httpx.Client(base_url=gateway.url, timeout=10) as client:
        for _ in range(3):  # the same connection, again and again
            response = client.get("/page")
            assert response.status_code == status and response.headers["etag"] == '"v1"'
            assert "content-length" not in response.headers or response.headers["content-length"] == "0"
