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
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

import httpx

from gateway.config import UpstreamSettings
from gateway.errors import BadGateway, BadRequest, GatewayTimeout, PayloadTooLarge, ServiceUnavailable
from gateway.proxy.headers import HeaderList

log = logging.getLogger("gateway.proxy")

Scope = dict[str, Any]
Receive = Any
Send = Any


class ClientDisconnected(Exception):
    """The browser went away while its request body was being relayed."""


class RequestBody:
    """The client's body as it arrives, chunk by chunk: never buffered whole."""

    def __init__(self, receive: Receive) -> None:
        self._receive = receive
        self.finished = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        while True:
            message = await self._receive()
            if message["type"] == "http.disconnect":
                raise ClientDisconnected()
            chunk = message.get("body", b"")
            if chunk:
                yield chunk
            if not message.get("more_body", False):
                self.finished = True
                return


class BodyTooLarge(PayloadTooLarge):
    """A streamed request body grew past [server] max_body_size."""


class LimitedBody:
    """Passes the body through until it exceeds ``limit`` bytes, then fails the upload.

    Raised inside the upstream client's body writer, the error aborts the upstream request (its
    connection is closed mid-body, so the app never sees a complete request); ``Upstream.send``
    finds it behind the client library's own error and the client gets 413.
    """

    def __init__(self, chunks: AsyncIterator[bytes], limit: int) -> None:
        self._chunks = chunks
        self._left = limit

    def __aiter__(self) -> LimitedBody:
        return self

    async def __anext__(self) -> bytes:
        chunk = await self._chunks.__anext__()
        self._left -= len(chunk)
        if self._left < 0:
            raise BodyTooLarge()
        return chunk


def declared_too_large(headers: list[tuple[bytes, bytes]], limit: int) -> bool:
    """A Content-Length over ``limit`` (0 = none): refused before anything is forwarded."""
    if not limit:
        return False
    for name, value in headers:
        if name == b"content-length":
            try:
                return int(value) > limit
            except ValueError:
                return False  # the server already refuses a malformed length
    return False


def _cause(exc: BaseException, kind: type[Exception]) -> Exception | None:
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


def has_body(headers: list[tuple[bytes, bytes]]) -> bool:
    for name, value in headers:
        if name == b"transfer-encoding":
            return True
        if name == b"content-length" and value.strip() not in (b"", b"0"):
            return True
    return False


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
            too_large = _cause(exc, BodyTooLarge)
            if too_large is not None:
                raise too_large from exc
            if _cause(exc, ClientDisconnected) is not None:
                raise ClientDisconnected() from exc
            log.warning("upstream error: %s: %s", type(exc).__name__, exc)
            raise BadGateway() from exc

    async def aclose(self) -> None:
        await self._transport.aclose()
