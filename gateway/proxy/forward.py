"""The two bodies of a forwarded request: the client's, relayed as it arrives and paced
(``ClientBody``), and the watch that notices a client leaving while a long answer streams
(``DisconnectWatch``)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from gateway.errors import BadRequest, GatewayError, PayloadTooLarge, RequestTimeout
from gateway.http import Receive
from gateway.proxy.framing import Framing

__all__ = ["PREFETCH", "BodyTimeout", "BodyTooLarge", "ClientBody", "ClientDisconnected", "DisconnectWatch",
           "IncompleteBody"]


class ClientDisconnected(Exception):
    """The browser went away while its request body was being relayed."""


class BodyTooLarge(PayloadTooLarge):
    """A streamed request body grew past [server] max_body_size."""


class BodyTimeout(RequestTimeout):
    """The client stopped sending its body ([server] body_timeout) or sent it too slowly
    ([server] body_min_rate)."""


class IncompleteBody(BadRequest):
    """The body ended before (or went past) the length the client declared."""


# Bodies up to this size are read whole before any upstream connection is taken (most form posts
# and API calls), and a larger one must deliver this much first: a client that declares a body and
# never sends it, or sends it a byte at a time, holds no upstream connection while it dawdles.
PREFETCH = 64 * 1024


class ClientBody:
    """The client's body as it arrives, chunk by chunk: never buffered whole beyond PREFETCH.

    Its pace is enforced while it is read: no chunk for ``idle_timeout`` seconds, or an average
    below ``min_rate`` bytes/s once ``idle_timeout`` seconds have passed since it started, ends it
    with 408. Exactly the declared length must arrive (400 otherwise), and at most ``max_size``
    bytes (413; 0 = no limit). What the upstream is sent is exactly what was read here.

    Raised inside the upstream client's body writer, these errors abort the upstream request (its
    connection is closed mid-body, so the app never sees a complete request), and the client
    library reports its own error: ``failure`` keeps the body's, which is what the client is told.
    """

    def __init__(self, receive: Receive, framing: Framing, *, idle_timeout: float, min_rate: int = 0,
                 max_size: int = 0) -> None:
        self._receive = receive
        self._expected = framing.length
        self._idle = idle_timeout
        self._min_rate = min_rate
        self._max = max_size
        self._loop = asyncio.get_running_loop()
        self._start = self._last = self._loop.time()
        self._received = 0
        self._early: list[bytes] = []
        self.finished = False
        self.failure: GatewayError | ClientDisconnected | None = None

    def _deadline(self) -> float:
        deadline = self._last + self._idle
        if self._min_rate:
            # The rate is owed only after a grace period as long as the idle limit.
            deadline = min(deadline, self._start + self._idle + self._received / self._min_rate)
        return deadline

    async def _next(self) -> bytes:
        """The next non-empty chunk, or b"" at the end of the body."""
        try:
            return await self._read()
        except (GatewayError, ClientDisconnected) as exc:
            self.failure = exc
            raise

    async def _read(self) -> bytes:
        while not self.finished:
            try:
                async with asyncio.timeout_at(self._deadline()):
                    message = await self._receive()
            except TimeoutError:
                raise BodyTimeout() from None
            if message["type"] == "http.disconnect":
                raise ClientDisconnected()
            chunk: bytes = message.get("body", b"")
            self._received += len(chunk)
            if self._max and self._received > self._max:
                raise BodyTooLarge()
            if self._expected is not None and self._received > self._expected:
                raise IncompleteBody("The request body is longer than its Content-Length.")
            if not message.get("more_body", False):
                self.finished = True
                if self._expected is not None and self._received != self._expected:
                    raise IncompleteBody("The request body is shorter than its Content-Length.")
            if chunk:
                self._last = self._loop.time()
                return chunk
        return b""

    async def prefetch(self, size: int = PREFETCH) -> None:
        """Read ahead until ``size`` bytes or the end have arrived, before the upstream is contacted."""
        buffered = sum(len(chunk) for chunk in self._early)
        while buffered < size and not self.finished:
            chunk = await self._next()
            if chunk:
                self._early.append(chunk)
                buffered += len(chunk)

    async def __aiter__(self) -> AsyncIterator[bytes]:
        early, self._early = self._early, []
        for chunk in early:
            yield chunk
        while chunk := await self._next():
            yield chunk


class DisconnectWatch:
    """Notices a browser that leaves while a response streams.

    Uvicorn silently drops sends to a closed connection, so without this an abandoned 1 GiB
    download would still be pulled whole from the upstream. Only started once the request body is
    fully read (``receive`` must have one reader at a time), and only for long responses.
    """

    def __init__(self, receive: Receive) -> None:
        self.gone = False
        self._task = asyncio.create_task(self._wait(receive))

    async def _wait(self, receive: Receive) -> None:
        while (await receive())["type"] != "http.disconnect":
            pass
        self.gone = True

    def stop(self) -> None:
        self._task.cancel()
