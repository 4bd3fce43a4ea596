"""Forwarding one admitted HTTP request: headers rewritten (proxy/headers.py), the body re-framed
and paced (proxy/framing.py, proxy/forward.py), the upstream asked (proxy/upstream.py), and its
answer streamed back with a watch for a client that leaves. Who the user is was decided before
(auth/gate.py): the handler is given a Principal and never looks at a cookie."""

from __future__ import annotations

import asyncio
import logging
import time

from gateway.config import ServerSettings
from gateway.errors import BadGateway, GatewayError, ServiceUnavailable, TooManyRequests
from gateway.http import Receive, Scope, Send, TrustedProxies, peer_of
from gateway.observe import Exchange, Metrics
from gateway.policy import CanonicalPath, Principal
from gateway.proxy.admission import ClientSlots
from gateway.proxy.errors import UpstreamTimeout
from gateway.proxy.forward import ClientBody, ClientDisconnected, DisconnectWatch
from gateway.proxy.framing import Framing
from gateway.proxy.headers import HeaderRules, downstream_response_headers, upstream_request_headers
from gateway.proxy.upstream import Upstream

__all__ = ["LONG_RESPONSE", "ClientTooSlow", "ProxyHandler", "ending_of"]

log = logging.getLogger("gateway.proxy")

# Responses of unknown length (SSE, chunked) or longer than this are watched for a client that
# leaves, and their pieces are sent under server.send_timeout.
LONG_RESPONSE = 1024 * 1024


class ClientTooSlow(Exception):
    """The client did not take a piece of the response within server.send_timeout."""


def ending_of(exc: Exception) -> str:
    """Why a response stopped after its head was sent, for the access line and the metrics."""
    if isinstance(exc, ClientTooSlow):
        return "client_timeout"
    if isinstance(exc, UpstreamTimeout):
        return "upstream_timeout"
    if isinstance(exc, (ClientDisconnected, OSError)):
        return "client_closed"
    return "upstream_error"


def _content_length(value: bytes | None) -> int | None:
    """The upstream's declared body length, or None (chunked, absent, unreadable)."""
    if value is None:
        return None
    try:
        length = int(value)
    except ValueError:
        return None
    return length if length >= 0 else None


class ProxyHandler:
    def __init__(self, server: ServerSettings, rules: HeaderRules, proxies: TrustedProxies, metrics: Metrics,
                 *, max_connections_per_client: int) -> None:
        self.rules = rules
        self.proxies = proxies
        self.metrics = metrics
        self.upstream: Upstream | None = None  # opened when the app starts serving
        self._max_body_size = server.max_body_size
        self._body_timeout = server.body_timeout
        self._body_min_rate = server.body_min_rate
        self._send_timeout = server.send_timeout
        self._client_slots = ClientSlots(max_connections_per_client)

    async def forward(self, scope: Scope, receive: Receive, send: Send, canonical: CanonicalPath, framing: Framing,
                      principal: Principal | None, exchange: Exchange) -> None:
        """Forward an allowed request and relay the answer; raises the GatewayError to refuse with
        while no answer has started."""
        upstream = self.upstream
        if upstream is None:
            raise ServiceUnavailable()
        client_ip = exchange.client
        outgoing = upstream_request_headers(scope["headers"], self.rules, principal=principal, client=peer_of(scope),
                                            scheme=scope.get("scheme", "http"), request_id=exchange.request_id)
        # Re-framed from what the gateway reads itself: never the client's own length (see framing.py).
        length = framing.header()
        if length is not None:
            outgoing.append(length)
        query: bytes = scope.get("query_string", b"")
        target = canonical.forward + ("?" + query.decode("latin-1") if query else "")
        body: ClientBody | None = None
        if framing.has_body:
            body = ClientBody(receive, framing, idle_timeout=self._body_timeout, min_rate=self._body_min_rate,
                              max_size=self._max_body_size)
            # No upstream connection is taken for a body that does not arrive.
            await body.prefetch()
        if not self._client_slots.acquire(client_ip):
            log.warning("too many upstream requests at once from one client (upstream.max_connections_per_client)")
            raise TooManyRequests(headers=[(b"retry-after", b"1")])
        try:
            await self._relay(scope, receive, send, canonical, exchange, upstream, target, outgoing, body)
        finally:
            self._client_slots.release(client_ip)

    async def _relay(self, scope: Scope, receive: Receive, send: Send, canonical: CanonicalPath, exchange: Exchange,
                     upstream: Upstream, target: str, outgoing: list[tuple[bytes, bytes]], body: ClientBody | None,
                     ) -> None:
        method: str = scope["method"]
        sent_at = time.perf_counter()
        try:
            response = await upstream.send(method, target, outgoing, body.__aiter__() if body is not None else None)
        except GatewayError:
            # The client's body stopped it (too large, too slow, cut short, gone): that is the answer.
            if body is not None and body.failure is not None:
                raise body.failure from None
            raise
        exchange.upstream = waited = time.perf_counter() - sent_at
        self.metrics.upstream_seconds.observe(waited)
        if not 200 <= response.status <= 599:
            # 101 needs the WebSocket relay; other 1xx are consumed by the client library; beyond
            # 599 no status line can be written. None of them can be relayed as they are.
            await response.aclose()
            log.warning("upstream answered with status %d, which cannot be relayed", response.status)
            raise BadGateway()
        watch: DisconnectWatch | None = None
        try:
            response_headers = downstream_response_headers(
                response.headers, self.rules, upstream_origin=upstream.origin, public_origin=self.proxies.origin_of(scope),
                status=response.status, request_id=exchange.request_id,
            )
            exchange.status = response.status
            await send({"type": "http.response.start", "status": response.status, "headers": response_headers})
            length = _content_length(response.header(b"content-length"))
            long_response = length is None or length > LONG_RESPONSE
            if (body is None or body.finished) and long_response:
                watch = DisconnectWatch(receive)
            # A client that stops reading holds an upstream connection: server.send_timeout bounds how
            # long one piece may wait to be taken (nginx's send_timeout). A short answer fits in the
            # socket buffers and needs no timer.
            send_timeout = self._send_timeout if long_response else None
            async for chunk in response.stream:
                if watch is not None and watch.gone:
                    log.info("client went away during %s %s; upstream response dropped", method, canonical.decision)
                    exchange.ended = "client_closed"
                    return
                if chunk:
                    exchange.bytes += len(chunk)
                    try:
                        async with asyncio.timeout(send_timeout):
                            await send({"type": "http.response.body", "body": chunk, "more_body": True})
                    except TimeoutError:
                        raise ClientTooSlow() from None
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        except Exception as exc:
            # Headers are already out: the only honest signal left is to cut the connection.
            exchange.ended = ending_of(exc)
            log.warning("upstream response aborted (%s): %s", exchange.ended, type(exc).__name__)
        finally:
            if watch is not None:
                watch.stop()
            await response.aclose()
