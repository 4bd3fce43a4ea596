"""The gateway's front door: one ASGI callable that every request passes through, a short dispatcher.

Lifespan goes to the Quart app (which opens and closes the shared resources). Every request gets
its access-log record; its target is checked first (http/target.py: a path that stays ambiguous is
refused before anything else sees it). ``/.gateway/...`` then goes to the Quart app; everything
else is admitted (auth/gate.py) and forwarded (proxy/handler.py, proxy/websocket.py), below Quart's
per-request machinery: the proxied request is the product's hot path.
"""

from __future__ import annotations

import logging
from typing import Any, cast

from quart import Quart

from gateway.auth.gate import Gate
from gateway.errors import GatewayError, NotFound
from gateway.http import (
    MAX_LOGGED_PATH,
    REQUEST_ID,
    Receive,
    Refusals,
    Scope,
    Send,
    Targets,
    TrustedProxies,
    first_value,
    is_gateway_page,
    raw_target,
    recording_send,
)
from gateway.http.target import PROBES
from gateway.observe import BAD_REQUEST, GATEWAY_PAGE, AccessLog, Exchange, request_id
from gateway.policy import CanonicalPath
from gateway.proxy.forward import ClientDisconnected
from gateway.proxy.framing import request_framing
from gateway.proxy.handler import ProxyHandler
from gateway.proxy.websocket import Admitted, WebSocketRelay

__all__ = ["EXCHANGE_KEY", "Gateway"]

log = logging.getLogger("gateway.proxy")

# nginx's convention for "the client closed the connection before any answer was sent".
CLIENT_CLOSED = 499
# Where the Quart views find the request's Exchange (to name the signed-in user in the access line).
EXCHANGE_KEY = "gateway.exchange"


class Gateway:
    """ASGI app: target checks -> Quart (gateway pages) or admission + proxy (everything else)."""

    def __init__(self, quart_app: Quart, *, targets: Targets, gate: Gate, proxy: ProxyHandler,
                 websockets: WebSocketRelay, refusals: Refusals, proxies: TrustedProxies, access: AccessLog,
                 max_body_size: int) -> None:
        self.quart = quart_app
        self.targets = targets
        self.gate = gate
        self.proxy = proxy
        self.websockets = websockets
        self.refusals = refusals
        self.proxies = proxies
        self.access = access
        self._max_body_size = max_body_size

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "lifespan":
            await self.quart(cast(Any, scope), cast(Any, receive), cast(Any, send))
            return
        exchange = Exchange(request_id(first_value(scope["headers"], REQUEST_ID)), scope.get("method", "GET"),
                            self.proxies.client_of(scope))
        try:
            if kind == "websocket":
                await self._websocket(scope, receive, recording_send(send, exchange), exchange)
            else:
                await self._http(scope, receive, send, exchange)
        finally:
            self.access.finish(exchange)

    async def _http(self, scope: Scope, receive: Receive, send: Send, exchange: Exchange) -> None:
        given = scope.get("raw_path")
        raw_path = raw_target(scope)
        if raw_path is not given:  # absolute-form target, or a server without raw_path: record the path used
            scope = dict(scope, raw_path=raw_path)
        try:
            canonical = self.targets.canonical(raw_path, scope.get("query_string", b""), scope["method"])
            # Load balancers probe health by address, whatever server.hosts says.
            self.targets.check_host(scope, listed_only=canonical.decision not in PROBES)
        except GatewayError as exc:
            # Refused before it had a canonical path: logged as sent, cut short.
            exchange.decision = BAD_REQUEST
            exchange.path = raw_path[:MAX_LOGGED_PATH].decode("latin-1")
            await self.refusals.http(scope, send, exc, exchange)
            return
        exchange.path = canonical.decision
        if is_gateway_page(canonical):
            await self._page(scope, receive, send, canonical, exchange)
            return
        try:
            # How the body goes upstream is decided from the head alone, before anything else (400, 413).
            framing = request_framing(scope["method"], scope["headers"], self._max_body_size)
            admission = await self.gate.admit(scope, canonical, exchange, method=scope["method"])
            await self.proxy.forward(scope, receive, send, canonical, framing, admission.principal, exchange)
        except GatewayError as exc:
            await self.refusals.http(scope, send, exc, exchange)
        except ClientDisconnected:
            exchange.ended = "client_closed"
            if not exchange.status:
                exchange.status = CLIENT_CLOSED
        except Exception:
            # A bug must still fail closed with a proper answer, never forward or hang.
            log.exception("unexpected error on the proxy path")
            await self.refusals.http(scope, send, GatewayError(), exchange)

    async def _page(self, scope: Scope, receive: Receive, send: Send, canonical: CanonicalPath,
                    exchange: Exchange) -> None:
        # Quart routes on the canonical path; its own decoding of the raw bytes is never used.
        inner = dict(scope, path=canonical.decision, raw_path=canonical.forward.encode("ascii"))
        inner[EXCHANGE_KEY] = exchange
        exchange.decision = GATEWAY_PAGE
        await self.quart(cast(Any, inner), cast(Any, receive), cast(Any, recording_send(send, exchange)))

    async def _websocket(self, scope: Scope, receive: Receive, send: Send, exchange: Exchange) -> None:
        async def admit() -> Admitted:
            """The checks of an HTTP GET, in the same order; raises the GatewayError to answer with."""
            # ASGI promises lower-case names and Uvicorn keeps that; lower-cased anyway, because the
            # cookie lookup compares exactly and a server that forgot would make every socket anonymous.
            lowered = dict(scope, headers=[(name.lower(), value) for name, value in scope["headers"]])
            raw_path = raw_target(scope)
            exchange.decision, exchange.path = BAD_REQUEST, raw_path[:MAX_LOGGED_PATH].decode("latin-1")
            self.targets.check_host(lowered)
            canonical = self.targets.canonical(raw_path, scope.get("query_string", b""))
            exchange.path = canonical.decision
            if is_gateway_page(canonical):
                exchange.decision = GATEWAY_PAGE
                raise NotFound("The gateway's own pages do not take WebSockets.")
            exchange.decision = "error"  # until the policy decides (the session store may fail first)
            admission = await self.gate.admit(lowered, canonical, exchange, method="GET", websocket=True)
            headers = lowered["headers"]
            user_agent = (first_value(headers, b"user-agent") or b"").decode("latin-1")
            recheck = self.gate.recheck(admission, canonical, headers, "GET", client=exchange.client,
                                        user_agent=user_agent)
            return Admitted(canonical, admission.principal, recheck)

        await self.websockets(scope, receive, send, exchange, admit)
