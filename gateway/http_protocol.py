"""Uvicorn's httptools protocol with the guards nginx has and httptools lacks.

- A cap on the request head (request line + headers): httptools buffers a header of any size and
  any number of headers, so one connection could hold hundreds of MiB before the app saw anything.
  The head is measured twice: the bytes received while it is incomplete (a head that never ends),
  and exactly, header by header, when it is complete (a head that arrives in one read). Over
  ``max_head`` the client gets ``431`` and the connection is closed: no request is started.
- A deadline for the request head: without one, a client sending a header line every few seconds
  ("slowloris") holds its connection, and its file descriptor, for ever. A head not complete
  ``head_timeout`` after its first byte gets ``408`` and a close; a new connection that sends
  nothing for that long is closed quietly (between requests Uvicorn's keep-alive timeout applies).
- A target too long for the parser gets ``414`` as shorter over-long ones do (not Uvicorn's 400),
  and every answer written here carries the gateway's own headers (HSTS over HTTPS).

``configure()`` sets the limits once per process from the settings, before the server starts;
each worker process does it again for itself (see server.worker_app). The per-connection work is
a few counters and one timer.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from gateway.asgi import MAX_TARGET_BYTES

DEFAULT_MAX_HEAD = 64 * 1024
DEFAULT_HEAD_TIMEOUT = 20.0


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
        super().connection_made(transport)
        self._head_bytes = 0  # received while the head is incomplete
        self._head_size = 0  # the head as parsed: target and headers
        self._target_size = 0
        self._in_head = True
        self._refused = False
        self._head_timer: asyncio.TimerHandle | None = self.loop.call_later(self.head_timeout, self._head_too_slow)

    def data_received(self, data: bytes) -> None:
        if self._in_head:
            self._head_bytes += len(data)
        super().data_received(data)
        # Checked after parsing: a read that holds a small head and the start of a big body is fine.
        if self._in_head and self._head_bytes > self.max_head and not self.transport.is_closing():
            self._too_large()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_head = True
        self._head_size = self._target_size = 0
        self._refused = self.transport.is_closing()
        if self._head_timer is None:
            self._head_timer = self.loop.call_later(self.head_timeout, self._head_too_slow)

    def on_url(self, url: bytes) -> None:
        super().on_url(url)
        self._target_size += len(url)
        self._head_size += len(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        super().on_header(name, value)
        self._head_size += len(name) + len(value) + 4

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._head_bytes = 0
        self._cancel_head_timer()
        if self._refused:
            return
        if self._head_size > self.max_head:
            self._too_large()
            return
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        if not self._refused:
            super().on_body(body)

    def on_message_complete(self) -> None:
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
        if not self.transport.is_closing():
            self.transport.write(_answer(status, text, self.extra_headers))
            self.transport.close()


def protocol_options(max_head: int, head_timeout: float, extra_headers: tuple[tuple[bytes, bytes], ...] = ()) -> dict[str, Any]:
    """The Uvicorn options that install the guarded protocol, configured for this process."""
    GuardedHttpToolsProtocol.configure(max_head=max_head, head_timeout=head_timeout, extra_headers=extra_headers)
    return {"http": GuardedHttpToolsProtocol}
