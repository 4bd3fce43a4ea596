"""Uvicorn's httptools protocol with the two guards nginx has and httptools lacks.

- A cap on the request head (request line + headers): httptools buffers a header of any size and
  any number of headers, so one connection could hold hundreds of MiB before the app saw anything.
  Over ``max_head`` bytes the client gets ``431`` and the connection is closed.
- A deadline for the request head: without one, a client sending a header line every few seconds
  ("slowloris") holds its connection, and its file descriptor, for ever. A head not complete
  ``head_timeout`` after its first byte gets ``408`` and a close; a new connection that sends
  nothing for that long is closed quietly (between requests Uvicorn's keep-alive timeout applies).

Both are set by ``configure()`` once per process from the settings, before the server starts;
the per-connection work is one counter and one timer.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

DEFAULT_MAX_HEAD = 64 * 1024
DEFAULT_HEAD_TIMEOUT = 20.0


def _answer(status: bytes, text: bytes) -> bytes:
    return (b"HTTP/1.1 " + status + b"\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: "
            + str(len(text)).encode() + b"\r\nconnection: close\r\n\r\n" + text)


HEAD_TOO_LARGE = _answer(b"431 Request Header Fields Too Large", b"Request header fields too large.\n")
HEAD_TIMEOUT = _answer(b"408 Request Timeout", b"The request took too long to arrive.\n")


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    max_head = DEFAULT_MAX_HEAD
    head_timeout = DEFAULT_HEAD_TIMEOUT

    @classmethod
    def configure(cls, *, max_head: int, head_timeout: float) -> None:
        cls.max_head = max_head
        cls.head_timeout = head_timeout

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._head_bytes = 0
        self._in_head = True
        self._head_timer: asyncio.TimerHandle | None = self.loop.call_later(self.head_timeout, self._head_too_slow)

    def data_received(self, data: bytes) -> None:
        if self._in_head:
            self._head_bytes += len(data)
        super().data_received(data)
        # Checked after parsing: a read that holds a small head and the start of a big body is fine.
        if self._in_head and self._head_bytes > self.max_head and not self.transport.is_closing():
            self._refuse(HEAD_TOO_LARGE)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_head = True
        if self._head_timer is None:
            self._head_timer = self.loop.call_later(self.head_timeout, self._head_too_slow)

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._head_bytes = 0
        self._cancel_head_timer()
        super().on_headers_complete()

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
                self._refuse(HEAD_TIMEOUT)
            else:  # an idle connection (a browser's preconnect): closed quietly, as nginx does
                self.transport.close()

    def _refuse(self, answer: bytes) -> None:
        self._cancel_head_timer()
        self.transport.write(answer)
        self.transport.close()


def protocol_options(max_head: int, head_timeout: float) -> dict[str, Any]:
    """The Uvicorn options that install the guarded protocol (for the server's options)."""
    GuardedHttpToolsProtocol.configure(max_head=max_head, head_timeout=head_timeout)
    return {"http": GuardedHttpToolsProtocol}
