"""The upstream as the proxy sees it: one origin, its timeouts, and the transport that reaches it.
An upstream failure before the answer's head becomes the GatewayError the client is told (502/503/504)."""

from __future__ import annotations

from collections.abc import AsyncIterator

from gateway.config import UpstreamSettings
from gateway.http import HeaderList
from gateway.proxy.errors import UpstreamError, gateway_error
from gateway.proxy.transport import Timeouts, Transport, UpstreamResponse

__all__ = ["Upstream", "default_transport"]


def default_transport(settings: UpstreamSettings) -> Transport:
    """The transport [upstream] transport names. aiohttp's is the default by measurement
    (bench/proxy_bench.py; httpcore's pool, encode/httpx#3215)."""
    if settings.transport == "httpx":
        from gateway.proxy.httpx_transport import HttpxTransport

        return HttpxTransport.pool(settings.max_connections)
    from gateway.proxy.aiohttp_transport import AiohttpTransport

    return AiohttpTransport(settings.max_connections)


class Upstream:
    def __init__(self, settings: UpstreamSettings, transport: Transport | None = None) -> None:
        self.origin = settings.url
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
        """The upstream's answer to ``method target``; raises the GatewayError to answer with instead."""
        try:
            return await self._transport.send(method, self.origin + target, headers, body, self._timeouts)
        except UpstreamError as exc:
            raise gateway_error(exc) from exc

    async def aclose(self) -> None:
        await self._transport.aclose()
