"""Uvicorn's httptools protocol with the guards nginx has and httptools lacks.

- A cap on the request head (request line + headers): httptools buffers a header of any size and
  any number of headers, so one connection could hold hundreds of MiB before the app saw anything.
  The head is measured twice: the bytes received while it is incomplete (a head that never ends),
  and exactly, header by header, when it is complete (a head that arrives in one read). Over
  ``max_head`` the client gets ``431`` and the connection is closed: no request is started.
- At most MAX_HEADERS header lines: each costs Uvicorn some 120 bytes of Python objects however
  short it is, so 64 KiB of ``a:b`` lines would cost 1.5 MiB per connection.
- Trailers of a chunked request body count against the same size and time limits as the head
  (over them the connection is closed), and are never kept: ASGI has no request trailers.
- A deadline for the request head: without one, a client sending a header line every few seconds
  ("slowloris") holds its connection, and its file descriptor, for ever. A head not complete
  ``head_timeout`` after its first byte gets ``408`` and a close; a new connection that sends
  nothing for that long is closed quietly (between requests Uvicorn's keep-alive timeout applies).
- A target too long for the parser gets ``414`` as shorter over-long ones do (not Uvicorn's 400),
  and every answer written here carries the gateway's own headers (HSTS over HTTPS).
- Upgrades other than a WebSocket handshake. llhttp stops parsing at the end of any head that asks
  for an upgrade (``Connection: Upgrade`` + ``Upgrade: h2c``, ``foo``, ``TLS/1.2``...), so a body
  declared beside it is never read: the app would get ``Content-Length: N`` and no bytes, and an
  upstream connection waiting for N bytes would swallow the next user's request (request
  smuggling). Such a request is refused with ``400`` and a close when it declares a body; without
  one it is served as plain HTTP/1.1 (as nginx serves ``curl --http2`` over http) and the
  connection closes after the answer, since nothing after that head can be parsed. A WebSocket
  handshake must be a GET without a body.
- Pipelining: at most one request per connection is parsed ahead of the answer being written (as
  nginx does). httptools parses every request in the bytes it is given, so a read holding
  thousands of pipelined requests would become thousands of queued requests in memory; here the
  bytes beyond the next complete head wait, unparsed, with reading paused, until the answers
  before them are out.

``configure()`` sets the limits once per process from the settings, before the server starts;
each worker process does it again for itself (see server.worker_app). The per-connection work is
a few counters and one timer.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.flow_control import HIGH_WATER_LIMIT, FlowControl
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from gateway.http.headers import declares_body
from gateway.http.target import MAX_TARGET_BYTES

DEFAULT_MAX_HEAD = 64 * 1024
DEFAULT_HEAD_TIMEOUT = 20.0
# Where a head ends. llhttp insists on CRLF line ends (a bare LF is a parse error), so every
# complete head, and every chunked body's last line, contains this.
HEAD_END = b"\r\n\r\n"
LINGER = 2.0  # seconds a refused connection is still read (and dropped) before it is closed
MAX_HEADERS = 100  # header lines in a request head (Apache's LimitRequestFields); then 431
# The WebSocket library that parses a handshake after the upgrade refuses a head line over this
# many bytes (CRLF included), and without a word: such a handshake gets 431 here instead.
WEBSOCKET_MAX_LINE = 8192


class _HeldFlow(FlowControl):
    """Uvicorn's flow control, except that reading stays paused while unparsed pipelined bytes wait:
    Uvicorn resumes reading after each answer and as the app drains a body, which would otherwise
    let a pipelining client fill memory one read at a time."""

    def __init__(self, transport: asyncio.Transport, protocol: GuardedHttpToolsProtocol) -> None:
        super().__init__(transport)
        self._protocol = protocol

    def resume_reading(self) -> None:
        if not self._protocol.holding:
            super().resume_reading()


def _answer(status: bytes, text: bytes, extra: tuple[tuple[bytes, bytes], ...]) -> bytes:
    head = b"".join(name + b": " + value + b"\r\n" for name, value in extra)
    return (b"HTTP/1.1 " + status + b"\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: "
            + str(len(text)).encode() + b"\r\nconnection: close\r\n" + head + b"\r\n" + text)


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    max_head = DEFAULT_MAX_HEAD
    head_timeout = DEFAULT_HEAD_TIMEOUT
    extra_headers: tuple[tuple[bytes, bytes], ...] = ()

    @classmethod
    def configure(cls, *, max_head: int, head_timeout: float, extra_headers: tuple[tuple[bytes, bytes], ...] = ()) -> None:
        cls.max_head = max_head
        cls.head_timeout = head_timeout
        cls.extra_headers = extra_headers

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self._backlog: bytes = b""  # received, not yet parsed: what follows a request parsed ahead
        self._draining = False
        self._upgrade_ignored = False  # llhttp stopped at an upgrade: nothing more can be parsed
        self._header_count = 0
        self._trailer_size = 0
        self._trailer_timer: asyncio.TimerHandle | None = None
        super().connection_made(transport)
        self.flow = _HeldFlow(transport, self)
        self._head_bytes = 0  # received while the head is incomplete
        self._head_size = 0  # the head as parsed: target and headers
        self._target_size = 0
        self._in_head = True
        self._refused = False
        self._lingering = False  # refused and answered: what the client still sends is read and dropped
        self._head_timer: asyncio.TimerHandle | None = self.loop.call_later(self.head_timeout, self._head_too_slow)

    @property
    def holding(self) -> bool:
        """Unparsed bytes are waiting: read no more until they are parsed."""
        return bool(self._backlog)

    def data_received(self, data: bytes) -> None:
        if self._lingering:
            return
        if self._upgrade_ignored:
            return  # the parser stopped at an upgrade; the connection closes after its answer
        if self._backlog:
            self._backlog += data
            self.flow.pause_reading()
            return
        if not self.pipeline and data.count(HEAD_END) <= 1:
            # The common case, one request per read: at most one head can complete in it, so at
            # most one request is parsed ahead of the answer in progress.
            self._parse(data)
            return
        self._backlog = data
        self._drain()

    def _drain(self) -> None:
        """Parse the backlog up to one head end at a time, stopping once a request waits in the
        pipeline (one parsed ahead); the rest stays unparsed until that request is answered."""
        if self._draining:
            return
        self._draining = True
        try:
            while self._backlog and not self.pipeline and not self.transport.is_closing():
                end = self._backlog.find(HEAD_END)
                cut = len(self._backlog) if end < 0 else end + len(HEAD_END)
                piece, self._backlog = self._backlog[:cut], self._backlog[cut:]
                self._parse(piece)
                if self._upgrade_ignored or self.transport.get_protocol() is not self:
                    self._backlog = b""  # an upgrade: what follows is not HTTP/1.1 for us to parse
            if self._backlog:
                self.flow.pause_reading()
            elif self.cycle is None or len(self.cycle.body) <= HIGH_WATER_LIMIT:
                self.flow.resume_reading()
        finally:
            self._draining = False

    def on_response_complete(self) -> None:
        super().on_response_complete()  # starts the request parsed ahead, if any
        if self._backlog and not self.transport.is_closing():
            self._drain()

    def _parse(self, data: bytes) -> None:
        if self._in_head:
            self._head_bytes += len(data)
        super().data_received(data)
        # Checked after parsing: a read that holds a small head and the start of a big body is fine.
        if self._in_head and self._head_bytes > self.max_head and not self.transport.is_closing():
            self._too_large()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_head = True
        self._head_size = self._target_size = self._header_count = 0
        self._refused = self.transport.is_closing()
        if self._head_timer is None:
            self._head_timer = self.loop.call_later(self.head_timeout, self._head_too_slow)

    def on_url(self, url: bytes) -> None:
        super().on_url(url)
        self._target_size += len(url)
        self._head_size += len(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        if self._refused:
            return
        if not self._in_head:
            self._on_trailer(name, value)
            return
        self._header_count += 1
        if self._header_count > MAX_HEADERS:
            self._refuse(b"431 Request Header Fields Too Large", b"Too many request header fields.\n")
            return
        super().on_header(name, value)
        self._head_size += len(name) + len(value) + 4

    def _on_trailer(self, name: bytes, value: bytes) -> None:
        """A trailer line of a chunked body: counted and timed like the head, then dropped. The
        answer may already be out (the gateway refused the request), so over a limit the
        connection is closed rather than answered."""
        self._trailer_size += len(name) + len(value) + 4
        if self._trailer_size > self.max_head:
            self.transport.close()
        elif self._trailer_timer is None:
            self._trailer_timer = self.loop.call_later(self.head_timeout, self.transport.close)

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._head_bytes = 0
        self._cancel_head_timer()
        if self._refused:
            return
        if self._head_size > self.max_head:
            self._too_large()
            return
        if self.parser.should_upgrade():
            if self._should_upgrade():  # a WebSocket handshake: a GET, and nothing after its head
                if self.parser.get_method() != b"GET" or declares_body(self.headers):
                    self._refuse(b"400 Bad Request", b"A WebSocket handshake is a GET without a body.\n")
                    return
                if len(self.url) + len(b"GET  HTTP/1.1\r\n") > WEBSOCKET_MAX_LINE:
                    self._refuse(b"414 URI Too Long", b"The request target is too long.\n")
                    return
                if any(len(name) + len(value) + 4 > WEBSOCKET_MAX_LINE for name, value in self.headers):
                    self._refuse(b"431 Request Header Fields Too Large", b"A handshake header line is too long.\n")
                    return
            elif declares_body(self.headers):
                # llhttp would not read this body: refused, never forwarded with a length it lacks.
                self._refuse(b"400 Bad Request", b"An upgrade request cannot carry a body.\n")
                return
            else:
                self._upgrade_ignored = True
                super().on_headers_complete()
                self.cycle.keep_alive = False  # nothing after this head can be parsed
                return
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        if not self._refused:
            super().on_body(body)

    def on_message_complete(self) -> None:
        self._trailer_size = 0
        if self._trailer_timer is not None:
            self._trailer_timer.cancel()
            self._trailer_timer = None
        if not self._refused:
            super().on_message_complete()

    def send_400_response(self, msg: str) -> None:
        if self._target_size > MAX_TARGET_BYTES:  # the parser gave up on a very long target
            self._too_large()
        else:
            self._refuse(b"400 Bad Request", msg.encode("ascii", "replace") + b"\n")

    def _too_large(self) -> None:
        """414 when the target is what is too long (as shorter over-long targets get), else 431."""
        if self._target_size > MAX_TARGET_BYTES:
            self._refuse(b"414 URI Too Long", b"The request target is too long.\n")
        else:
            self._refuse(b"431 Request Header Fields Too Large", b"Request header fields too large.\n")

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_timer()
        if self._trailer_timer is not None:
            self._trailer_timer.cancel()
        super().connection_lost(exc)

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_too_slow(self) -> None:
        self._head_timer = None
        if self._in_head and not self.transport.is_closing():
            if self._head_bytes:
                self._refuse(b"408 Request Timeout", b"The request took too long to arrive.\n")
            else:  # an idle connection (a browser's preconnect): closed quietly, as nginx does
                self.transport.close()

    def _refuse(self, status: bytes, text: bytes) -> None:
        self._refused = True
        self._cancel_head_timer()
        if self.transport.is_closing():
            return
        self.transport.write(_answer(status, text, self.extra_headers))
        if not self.transport.can_write_eof():
            self.transport.close()
            return
        # A lingering close, as nginx's: the answer and then our FIN go out, and what the client is
        # still sending (the rest of a huge head or body) is read and dropped for a moment. Closing
        # at once with unread bytes would make the kernel send a reset, which can destroy the answer
        # before the client reads it.
        self._lingering = True
        self.transport.write_eof()
        self.loop.call_later(LINGER, self.transport.close)


def protocol_options(max_head: int, head_timeout: float, extra_headers: tuple[tuple[bytes, bytes], ...] = ()) -> dict[str, Any]:
    """The Uvicorn options that install the guarded protocol, configured for this process."""
    GuardedHttpToolsProtocol.configure(max_head=max_head, head_timeout=head_timeout, extra_headers=extra_headers)
    return {"http": GuardedHttpToolsProtocol}
