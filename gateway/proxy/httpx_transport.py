"""``[upstream] transport = "httpx"``: httpx's own connection pool (or any httpx transport) behind
the Transport method, httpx's exceptions translated into the proxy's own where they enter.

Not the default, by measurement: httpcore's pool scans every connection under a lock
(encode/httpx#3215); see bench/proxy_bench.py and the README's upstream.transport."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx

from gateway.http import HeaderList
from gateway.proxy.errors import (
    RequestNotForwardable,
    UpstreamConnectError,
    UpstreamError,
    UpstreamPoolFull,
    UpstreamProtocolError,
    UpstreamReadError,
    UpstreamTimeout,
)
from gateway.proxy.transport import Timeouts, UpstreamResponse

__all__ = ["HttpxTransport", "upstream_error"]


def upstream_error(exc: httpx.HTTPError) -> UpstreamError:
    """httpx's exception in the proxy's words."""
    if isinstance(exc, httpx.PoolTimeout):
        return UpstreamPoolFull("every upstream connection is busy")
    if isinstance(exc, httpx.TimeoutException):
        return UpstreamTimeout(type(exc).__name__)
    if isinstance(exc, httpx.LocalProtocolError):
        return RequestNotForwardable(str(exc))
    if isinstance(exc, httpx.ConnectError):
        return UpstreamConnectError(str(exc))
    return UpstreamProtocolError(str(exc))


async def _chunks(stream: httpx.AsyncByteStream) -> AsyncIterator[bytes]:
    try:
        async for chunk in stream:
            yield chunk
    except httpx.TimeoutException as exc:
        raise UpstreamTimeout(type(exc).__name__) from exc
    except httpx.HTTPError as exc:
        raise UpstreamReadError(str(exc)) from exc


class HttpxTransport:
    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self._inner = inner

    @classmethod
    def pool(cls, max_connections: int) -> HttpxTransport:
        limits = httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections,
                              keepalive_expiry=30.0)
        return cls(httpx.AsyncHTTPTransport(limits=limits, trust_env=False, retries=0))

    async def send(
        self, method: str, url: str, headers: HeaderList, body: AsyncIterator[bytes] | None, timeouts: Timeouts
    ) -> UpstreamResponse:
        try:
            request = httpx.Request(method, url, headers=headers, content=body, extensions={"timeout": timeouts})
        except (httpx.InvalidURL, ValueError) as exc:
            raise RequestNotForwardable(str(exc)) from exc
        try:
            response = await self._inner.handle_async_request(request)
        except httpx.HTTPError as exc:
            raise upstream_error(exc) from exc
        stream = response.stream
        assert isinstance(stream, httpx.AsyncByteStream)
        return UpstreamResponse(response.status_code, list(response.headers.raw), _chunks(stream), response.aclose)

    async def aclose(self) -> None:
        await self._inner.aclose()
