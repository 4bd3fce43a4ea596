"""Tiny HTTP/1.1 upstreams for the streaming tests, served on free loopback ports from threads of the
test process, so a test can see what the upstream has done (bytes written or read, connections held)
and tell it when to go on. The gateway under test is still a real process talking real TCP to them.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache

BLOCK = bytes(range(256)) * 256  # 64 KiB, the demo app's pattern


@cache
def pattern_sha256(size: int) -> str:
    digest = hashlib.sha256()
    for _ in range(size // len(BLOCK)):
        digest.update(BLOCK)
    digest.update(BLOCK[: size % len(BLOCK)])
    return digest.hexdigest()


class Conn:
    """A buffered reader over one accepted socket."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = b""

    def _fill(self) -> bool:
        data = self.sock.recv(1 << 16)
        self.buffer += data
        return bool(data)

    def head(self) -> tuple[str, dict[str, str]] | None:
        while b"\r\n\r\n" not in self.buffer:
            if not self._fill():
                return None
        head, _, self.buffer = self.buffer.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        return lines[0], headers

    def read(self, size: int) -> bytes:
        while len(self.buffer) < size:
            if not self._fill():
                raise ConnectionError("body cut short")
        data, self.buffer = self.buffer[:size], self.buffer[size:]
        return data

    def line(self) -> bytes:
        while b"\r\n" not in self.buffer:
            if not self._fill():
                raise ConnectionError("body cut short")
        data, _, self.buffer = self.buffer.partition(b"\r\n")
        return data

    def body(self, headers: dict[str, str], on_bytes: Callable[[bytes], None]) -> None:
        """Read the body piece by piece (chunked or sized), handing each piece to ``on_bytes``."""
        if "chunked" in headers.get("transfer-encoding", "").lower():
            while size := int(self.line().split(b";")[0] or b"0", 16):
                remaining = size
                while remaining:
                    piece = self.read(min(remaining, 1 << 16))
                    on_bytes(piece)
                    remaining -= len(piece)
                self.line()
            while self.line():  # trailers, up to the empty line
                pass
            return
        remaining = int(headers.get("content-length") or 0)
        while remaining:
            piece = self.read(min(remaining, 1 << 16))
            on_bytes(piece)
            remaining -= len(piece)


@dataclass
class Stub:
    """A listening socket and one thread per accepted connection running ``serve(stub, conn)``."""

    serve: Callable[[Stub, Conn], None]
    sock: socket.socket = field(default_factory=socket.socket)
    lock: threading.Lock = field(default_factory=threading.Lock)
    accepted: int = 0  # connections ever accepted
    open: int = 0  # connections open now
    busy: int = 0  # requests being answered now
    max_busy: int = 0
    requests: int = 0
    written: int = 0  # body bytes sent
    read: int = 0  # body bytes received
    go_on: threading.Event = field(default_factory=threading.Event)  # set by the test: stop stalling
    answering: bool = True  # black hole while false
    closing: bool = False
    conns: list[socket.socket] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(1024)
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.sock.getsockname()[1]}"

    def _accept(self) -> None:
        while not self.closing:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            with self.lock:
                self.accepted += 1
                self.open += 1
                self.conns.append(client)
            threading.Thread(target=self._run, args=(client,), daemon=True).start()

    def _run(self, client: socket.socket) -> None:
        try:
            self.serve(self, Conn(client))
        except OSError:
            pass
        finally:
            with self.lock:
                self.open -= 1
            client.close()

    def add(self, counter: str, amount: int) -> None:
        with self.lock:
            setattr(self, counter, getattr(self, counter) + amount)

    def close(self) -> None:
        self.closing = True
        self.go_on.set()
        self.sock.close()
        with self.lock:
            for client in self.conns:
                with contextlib.suppress(OSError):
                    client.shutdown(socket.SHUT_RDWR)


def answer(conn: Conn, status: int, body: bytes, content_type: str = "application/json") -> None:
    conn.sock.sendall(f"HTTP/1.1 {status} X\r\nContent-Type: {content_type}\r\n"
                      f"Content-Length: {len(body)}\r\n\r\n".encode() + body)


def download(size: int, stall_after: int) -> Callable[[Stub, Conn], None]:
    """Every request gets ``size`` bytes of the pattern; sending waits for ``go_on`` after ``stall_after``
    bytes only if the test wants the upstream itself to stall (else the client's stall is what holds it)."""

    def serve(stub: Stub, conn: Conn) -> None:
        while (request := conn.head()) is not None:
            conn.body(request[1], lambda _: None)
            stub.add("requests", 1)
            conn.sock.sendall(f"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
                              f"Content-Length: {size}\r\n\r\n".encode())
            sent = 0
            while sent < size:
                if sent >= stall_after:
                    stub.go_on.wait()
                piece = BLOCK[: min(size - sent, len(BLOCK))]
                conn.sock.sendall(piece)
                sent += len(piece)
                stub.add("written", len(piece))

    return serve


class _Body:
    def __init__(self, stub: Stub, stall_after: int) -> None:
        self.stub, self.stall_after = stub, stall_after
        self.digest = hashlib.sha256()
        self.seen = 0

    def take(self, piece: bytes) -> None:
        if self.seen >= self.stall_after:
            self.stub.go_on.wait()
        self.digest.update(piece)
        self.seen += len(piece)
        self.stub.add("read", len(piece))


def slow_reader(stall_after: int) -> Callable[[Stub, Conn], None]:
    """Reads ``stall_after`` body bytes, then stops reading until ``go_on``; answers with the body's
    length and sha256, as the demo app does."""

    def serve(stub: Stub, conn: Conn) -> None:
        while (request := conn.head()) is not None:
            stub.add("requests", 1)
            body = _Body(stub, stall_after)
            conn.body(request[1], body.take)
            answer(conn, 200, json.dumps({"body_length": body.seen, "body_sha256": body.digest.hexdigest()}).encode())

    return serve


def counting(delay: float) -> Callable[[Stub, Conn], None]:
    """Keep-alive answers after ``delay`` seconds, recording how many requests were in hand at once;
    holds connections without a word while ``answering`` is false (a black hole)."""

    def serve(stub: Stub, conn: Conn) -> None:
        while (request := conn.head()) is not None:
            conn.body(request[1], lambda _: None)
            if not stub.answering:
                while conn.sock.recv(1 << 16):  # never answer; notice only the gateway hanging up
                    pass
                return
            with stub.lock:
                stub.requests += 1
                stub.busy += 1
                stub.max_busy = max(stub.max_busy, stub.busy)
            stub.go_on.wait(delay)  # the answer's delay (go_on cuts it short)
            with stub.lock:
                stub.busy -= 1
            answer(conn, 200, b'{"ok": true}')

    return serve


def deaf(stub: Stub, conn: Conn) -> None:
    """Takes the request head, then neither reads the body nor answers until ``go_on``."""
    conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    while (request := conn.head()) is not None:
        stub.add("requests", 1)
        stub.go_on.wait()
        conn.body(request[1], lambda _: None)
        answer(conn, 200, b'{"ok": true}')
