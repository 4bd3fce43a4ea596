"""Forwarding one allowed request to the upstream, streaming both bodies.

A proxy needs none of an HTTP client's policy layer (redirects, auth, the shared cookie jar that would
leak one user's cookies to another), so the upstream is reached through a ``Transport``: one method
that sends one request. The default one drives aiohttp's connection pool directly; ``HttpxTransport``
puts any httpx transport (httpx's own pool, test doubles) behind the same method. Measured, building
httpx's Request/URL objects alone was ~10% of the proxied request's CPU, hence raw headers and a
plain URL string here. Transports raise httpx's exceptions; they are translated here, where they
enter, into 502/503/504.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

import httpx

from gateway.config import UpstreamSettings
from gateway.errors import (
    BadGateway,
    BadRequest,
    GatewayTimeout,
    PayloadTooLarge,
    RequestTimeout,
    ServiceUnavailable,
)
from gateway.proxy.framing import Framing
from gateway.proxy.headers import HeaderList

log = logging.getLogger("gateway.proxy")

Scope = dict[str, Any]
Receive = Any
Send = Any


class ClientDisconnected(Exception):
    """The browser went away while its request body was being relayed."""


class BodyTooLarge(PayloadTooLarge):
    """A streamed request body grew past [server] max_body_size."""


class BodyTimeout(RequestTimeout):
    """The client stopped sending its body ([server] body_timeout) or sent it too slowly
    ([server] body_min_rate)."""


class IncompleteBody(BadRequest):
    """The body ended before (or went past) the length the client declared."""


# Raised inside the upstream client's body writer, these abort the upstream request (its connection
# is closed mid-body, so the app never sees a complete request); Upstream.send finds them behind the
# client library's own error and answers with their status.
BODY_ERRORS = (BodyTooLarge, BodyTimeout, IncompleteBody)

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

    def _deadline(self) -> float:
        deadline = self._last + self._idle
        if self._min_rate:
            # The rate is owed only after a grace period as long as the idle limit.
            deadline = min(deadline, self._start + self._idle + self._received / self._min_rate)
        return deadline

    async def _next(self) -> bytes:
        """The next non-empty chunk, or b"" at the end of the body."""
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


def fingerprint(text: str) -> str:
    """A short hash that tells identical errors apart in logs without quoting them."""
    return hashlib.sha256(text.encode("utf-8", "replace")).hexdigest()[:12]


def _cause(exc: BaseException, kind: type[Exception] | tuple[type[Exception], ...]) -> Exception | None:
    """The ``kind`` error behind ``exc``, through the client libraries' wrapping."""
    seen: BaseException | None = exc
    for _ in range(8):
        if seen is None:
            return None
        if isinstance(seen, kind):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


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


Timeouts = dict[str, float]


@dataclass(slots=True)
class UpstreamResponse:
    """The upstream's answer: status, raw headers (names as sent), and the body as it arrives."""

    status: int
    headers: HeaderList
    stream: AsyncIterator[bytes]
    close: Callable[[], Awaitable[None]]

    def header(self, name: bytes) -> bytes | None:
        """The first value of ``name`` (lower case)."""
        for key, value in self.headers:
            if key.lower() == name:
                return value
        return None

    async def aclose(self) -> None:
        await self.close()


class Transport(Protocol):
    """Sends one request upstream. Failures are raised as httpx's exceptions, the one vocabulary
    that Upstream.send translates into 502/503/504."""

    async def send(
        self, method: str, url: str, headers: HeaderList, body: AsyncIterator[bytes] | None, timeouts: Timeouts
    ) -> UpstreamResponse: ...

    async def aclose(self) -> None: ...


class HttpxTransport:
    """Any httpx transport (httpx's own pool, MockTransport in tests) behind the Transport protocol."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self._inner = inner

    async def send(
        self, method: str, url: str, headers: HeaderList, body: AsyncIterator[bytes] | None, timeouts: Timeouts
    ) -> UpstreamResponse:
        try:
            request = httpx.Request(method, url, headers=headers, content=body, extensions={"timeout": timeouts})
        except (httpx.InvalidURL, ValueError) as exc:
            raise httpx.LocalProtocolError(str(exc)) from exc
        response = await self._inner.handle_async_request(request)
        stream = response.stream
        assert isinstance(stream, httpx.AsyncByteStream)
        return UpstreamResponse(response.status_code, list(response.headers.raw), stream.__aiter__(), response.aclose)

    async def aclose(self) -> None:
        await self._inner.aclose()


def default_transport(settings: UpstreamSettings) -> Transport:
    """The transport [upstream] transport names. aiohttp's is the default by measurement: httpcore's
    pool scans every connection under a lock (encode/httpx#3215); here it held an authenticated GET at
    ~120 requests/s with a p99 of 1.4 s, against ~1,300 and 42 ms over aiohttp (bench/proxy_bench.py)."""
    if settings.transport == "httpx":
        limits = httpx.Limits(
            max_connections=settings.max_connections,
            max_keepalive_connections=settings.max_connections,
            keepalive_expiry=30.0,
        )
        return HttpxTransport(httpx.AsyncHTTPTransport(limits=limits, trust_env=False, retries=0))

    from gateway.proxy.aiohttp_transport import AiohttpTransport

    return AiohttpTransport(settings.max_connections)


class Upstream:
    def __init__(self, settings: UpstreamSettings, transport: Transport | httpx.AsyncBaseTransport | None = None) -> None:
        self.origin = settings.url
        if isinstance(transport, httpx.AsyncBaseTransport):
            transport = HttpxTransport(transport)
        self._transport: Transport = transport or default_transport(settings)
        self._timeouts: Timeouts = {
            "connect": settings.connect_timeout,
            "read": settings.read_timeout,
            "write": settings.write_timeout,
            "pool": settings.pool_timeout,
        }

    async def send(
        self, method: str, target: str, headers: HeaderList, body: AsyncIterator[bytes] | None
    ) -> UpstreamResponse:
        try:
            return await self._transport.send(method, self.origin + target, headers, body, self._timeouts)
        except httpx.PoolTimeout as exc:
            # Every upstream connection is busy: the gateway is overloaded, not the app broken.
            log.warning("upstream connection pool exhausted (upstream.max_connections)")
            raise ServiceUnavailable("Too many requests are waiting for the application.") from exc
        except httpx.TimeoutException as exc:
            log.warning("upstream too slow: %s", type(exc).__name__)
            raise GatewayTimeout() from exc
        except httpx.LocalProtocolError as exc:
            raise BadRequest("The request cannot be forwarded (malformed header).") from exc
        except httpx.HTTPError as exc:
            body_error = _cause(exc, BODY_ERRORS)
            if body_error is not None:
                raise body_error from exc
            if _cause(exc, ClientDisconnected) is not None:
                raise ClientDisconnected() from exc
            # The error's text can quote the upstream's raw bytes or the target with its query
            # string: only its kind and a short fingerprint of the text are logged.
            log.warning("upstream error: %s (detail %s)", type(exc).__name__, fingerprint(str(exc)))
            raise BadGateway() from exc

    async def aclose(self) -> None:
        await self._transport.aclose()
