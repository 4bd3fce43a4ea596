"""The gateway's front door: one ASGI callable that every request passes through.

It computes the canonical path first (a path that stays ambiguous is refused here, before anything
else sees it), then sends ``/.gateway/...`` to the Quart app and everything else down the proxy
path, which runs below Quart's per-request machinery: the proxied request is the product's hot path.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import re
import time
from typing import Any, cast

import httpx
from quart import Quart

from gateway.access import AccessLog, Exchange, request_id
from gateway.auth.cookie import cookie_value
from gateway.auth.redirects import sign_in_url
from gateway.auth.sessions import ActiveSession
from gateway.clock import Clock, system_clock
from gateway.errors import (
    BadGateway,
    BadRequest,
    Forbidden,
    GatewayError,
    ReauthenticationRequired,
    ServiceUnavailable,
    TooManyRequests,
    Unauthorized,
    UriTooLong,
    render_error,
    wants_html,
)
from gateway.http import HostRules, check_forwarded_host, check_host
from gateway.metrics import ALLOW, BAD_REQUEST, DENY, GATEWAY_PAGE, LOGIN, REAUTH
from gateway.policy import CanonicalPath, Outcome, PathError, canonicalize, decide_tunnelled
from gateway.policy.paths import origin_form
from gateway.proxy.admission import ClientSlots
from gateway.proxy.forward import ClientBody, ClientDisconnected, DisconnectWatch, Upstream
from gateway.proxy.framing import declares_body, request_framing
from gateway.proxy.headers import (
    REQUEST_ID,
    HeaderRules,
    client_address,
    downstream_response_headers,
    is_trusted,
    method_overrides,
    public_origin,
    upstream_request_headers,
)
from gateway.proxy.memory import MemoryBudget
from gateway.proxy.websocket import relay as relay_websocket
from gateway.services import Services

log = logging.getLogger("gateway.proxy")

Scope = dict[str, Any]
Receive = Any
Send = Any

GATEWAY_PREFIX = "/.gateway/"
# Longer targets are refused (as nginx does at 8 KiB); the upstream client refuses them anyway.
MAX_TARGET_BYTES = 8192
MAX_LOGGED_PATH = 1024  # a target refused as malformed is logged cut to this many characters
# Method names are case-sensitive (RFC 9110): "get" is not GET, and a server framing the answer to
# "head" as a GET's while the upstream answers a HEAD would hang the client.
METHOD = re.compile(r"[A-Z][A-Z0-9_-]{0,31}")
DECISION_LABEL = {Outcome.ALLOW: ALLOW, Outcome.LOGIN: LOGIN, Outcome.REAUTH: REAUTH, Outcome.FORBIDDEN: DENY}
# nginx's convention for "the client closed the connection before any answer was sent".
CLIENT_CLOSED = 499
# Where the Quart views find the request's Exchange (to name the signed-in user in the access line).
EXCHANGE_KEY = "gateway.exchange"


def _header(headers: list[tuple[bytes, bytes]], name: bytes) -> bytes | None:
    for key, value in headers:
        if key == name:
            return value
    return None


def _last_header(headers: list[tuple[bytes, bytes]], name: bytes) -> str | None:
    """The last line of a header: a trusted proxy's own line comes after any the client sent."""
    found: bytes | None = None
    for key, value in headers:
        if key == name:
            found = value
    return None if found is None else found.decode("latin-1")


async def send_simple(send: Send, status: int, headers: list[tuple[bytes, bytes]], body: bytes = b"") -> None:
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})


LONG_RESPONSE = 1024 * 1024


def _content_length(value: bytes | None) -> int | None:
    """The upstream's declared body length, or None (chunked, absent, unreadable). Streams of unknown
    length (SSE, chunked) or over LONG_RESPONSE are worth watching for a disconnect."""
    if value is None:
        return None
    try:
        length = int(value)
    except ValueError:
        return None
    return length if length >= 0 else None


@functools.lru_cache(maxsize=4096)
def _canonical(raw_path: bytes, allow_params: bool, case_insensitive: bool) -> CanonicalPath:
    """canonicalize() is pure, and a site's requests repeat a few thousand paths: measured ~7% of a
    proxied request's CPU; with this cache, 201 -> 198 us per request in all. Refusals (PathError)
    are not cached."""
    return canonicalize(raw_path, allow_params=allow_params, case_insensitive=case_insensitive)


def is_gateway_page(canonical: CanonicalPath) -> bool:
    """/.gateway and below: the gateway's own pages, never the upstream's."""
    return canonical.decision == "/.gateway" or canonical.decision.startswith(GATEWAY_PREFIX)


def recording_send(send: Send, exchange: Exchange) -> Send:
    """``send`` for the Quart pages and the WebSocket relay (not the proxy path, which records
    itself): notes the status and the bytes sent, and adds X-Request-ID to the response head."""
    tagged = (REQUEST_ID, exchange.request_id)

    async def recorded(message: dict[str, Any]) -> None:
        kind = message["type"]
        if kind == "http.response.body" or kind == "websocket.http.response.body":
            exchange.bytes += len(message.get("body", b""))
        elif kind == "websocket.send":
            text = message.get("text")
            exchange.bytes += len(text.encode()) if text is not None else len(message.get("bytes") or b"")
        elif kind == "http.response.start" or kind == "websocket.http.response.start" or kind == "websocket.accept":
            exchange.status = message.get("status", 101)
            message = dict(message, headers=[*message.get("headers", ()), tagged])
        elif kind == "websocket.close" and exchange.status == 0:
            exchange.status = 403  # closed before accept: the server answers the handshake with 403
        await send(message)

    return recorded


# The health probes answer whatever public host is named (a well-formed one): they tell nothing.
PROBES = frozenset({"/.gateway/healthz", "/.gateway/readyz"})
ANY_HOST = HostRules()
CLOSE = (b"connection", b"close")


def _close_if_body(scope: Scope) -> tuple[tuple[bytes, bytes], ...]:
    """``Connection: close`` for a refusal of a request that declared a body: the body may be
    unread (or still arriving, a byte at a time), and the connection must not stay open for it."""
    return (CLOSE,) if declares_body(scope["headers"]) else ()


class ClientTooSlow(Exception):
    """The client did not take a piece of the response within server.send_timeout."""


def ending_of(exc: Exception) -> str:
    """Why a response stopped after its head was sent, for the access line and the metrics."""
    if isinstance(exc, ClientTooSlow):
        return "client_timeout"
    if isinstance(exc, httpx.TimeoutException):
        return "upstream_timeout"
    if isinstance(exc, (ClientDisconnected, OSError)):
        return "client_closed"
    return "upstream_error"


class Gateway:
    """ASGI app: canonical path -> Quart (gateway pages) or policy + proxy (everything else)."""

    clock: Clock = system_clock  # what a `fresh` rule measures the sign-in's age against (create_app sets it)

    def __init__(self, quart_app: Quart, services: Services, header_rules: HeaderRules) -> None:
        self.quart = quart_app
        self.services = services
        self.rules = header_rules
        self.upstream: Upstream | None = None  # opened in Quart's before_serving
        settings = services.settings
        self._allow_params = settings.policy.allow_path_params
        self._case_insensitive = settings.policy.case_insensitive
        self._max_body_size = settings.server.max_body_size
        self._body_timeout = settings.server.body_timeout
        self._body_min_rate = settings.server.body_min_rate
        self._send_timeout = settings.server.send_timeout
        self.hosts = HostRules.from_settings(settings.server.hosts, settings.server.public_url)
        self._client_slots = ClientSlots(settings.upstream.max_connections_per_client)
        self.metrics = services.metrics
        # Shared by every WebSocket relay of this process (one event loop: a counter, no lock).
        self.websocket_memory = MemoryBudget(settings.upstream.websocket_memory, self.metrics.websocket_memory.set)
        self.access = AccessLog(services.metrics, enabled=settings.log.access, text=settings.log.format == "text")

    def canonical_target(self, raw_path: bytes, query: bytes, method: str | None = None) -> CanonicalPath:
        """The checks every request target passes first, HTTP or WebSocket handshake: its length
        (414), the method (400; HTTP only) and one canonical path (400 when ambiguous)."""
        if len(raw_path) + len(query) > MAX_TARGET_BYTES:
            raise UriTooLong()
        if method is not None and not METHOD.fullmatch(method):
            raise BadRequest("Unknown request method.")
        try:
            return _canonical(raw_path, self._allow_params, self._case_insensitive)
        except PathError as exc:
            raise BadRequest(f"Malformed or ambiguous path: {exc}.") from None

    def check_host(self, scope: Scope, *, listed_only: bool = True) -> None:
        """The Host header: one, well formed, and one of the public hosts when they are listed (400);
        and a trusted proxy's X-Forwarded-Host, which then stands for it, likewise."""
        headers: list[tuple[bytes, bytes]] = scope["headers"]
        rules = self.hosts if listed_only else ANY_HOST
        check_host(headers, rules, scope.get("http_version", "1.1"))
        if self.rules.trusted_proxies:
            peer = scope.get("client")
            if is_trusted(peer[0] if peer else None, self.rules.trusted_proxies):
                check_forwarded_host([v for k, v in headers if k == b"x-forwarded-host"], rules)

    def client_ip(self, headers: list[tuple[bytes, bytes]], peer: str | None) -> str:
        """The real client: the peer, or behind [server] trusted_proxies the address they name."""
        trusted = self.rules.trusted_proxies
        if not trusted:
            return peer or ""
        return client_address(peer, [v.decode("latin-1") for k, v in headers if k == b"x-forwarded-for"], trusted)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "lifespan":
            await self.quart(cast(Any, scope), receive, send)
            return
        headers: list[tuple[bytes, bytes]] = scope["headers"]
        peer_info = scope.get("client")
        exchange = Exchange(request_id(_header(headers, REQUEST_ID)), scope.get("method", "GET"),
                            self.client_ip(headers, peer_info[0] if peer_info else None))
        try:
            if kind == "websocket":
                await relay_websocket(self, scope, receive, recording_send(send, exchange), exchange)
            else:
                await self._http(scope, receive, send, exchange)
        finally:
            self.access.finish(exchange)

    async def _http(self, scope: Scope, receive: Receive, send: Send, exchange: Exchange) -> None:
        given = scope.get("raw_path")
        raw_path = origin_form(given or scope["path"].encode())
        if raw_path is not given:  # absolute-form target, or a server without raw_path: record the path used
            scope = dict(scope, raw_path=raw_path)
        try:
            canonical = self.canonical_target(raw_path, scope.get("query_string", b""), scope["method"])
            # Load balancers probe health by address, whatever server.hosts says.
            self.check_host(scope, listed_only=canonical.decision not in PROBES)
        except GatewayError as exc:
            await self._refuse(scope, send, exc, exchange, refused_path=raw_path)
            return
        exchange.path = canonical.decision
        if is_gateway_page(canonical):
            # Quart routes on the canonical path; its own decoding of the raw bytes is never used.
            inner = dict(scope, path=canonical.decision, raw_path=canonical.forward.encode("ascii"))
            inner[EXCHANGE_KEY] = exchange
            exchange.decision = GATEWAY_PAGE
            await self.quart(cast(Any, inner), receive, recording_send(send, exchange))
            return
        try:
            await self._proxy(scope, receive, send, canonical, exchange)
        except GatewayError as exc:
            await self._refuse(scope, send, exc, exchange)
        except ClientDisconnected:
            exchange.ended = "client_closed"
            if not exchange.status:
                exchange.status = CLIENT_CLOSED
        except Exception:
            # A bug must still fail closed with a proper answer, never forward or hang.
            log.exception("unexpected error on the proxy path")
            await self._refuse(scope, send, GatewayError(), exchange)

    async def _refuse(self, scope: Scope, send: Send, error: GatewayError, exchange: Exchange, user: str | None = None,
                      *, refused_path: bytes | None = None) -> None:
        html = wants_html(_header(scope["headers"], b"accept"))
        status, headers, body = render_error(error, html, user, pages=self.services.pages,
                                             target=(scope.get("raw_path") or b"", scope.get("query_string", b"")))
        if refused_path is not None:  # refused before it had a canonical path: logged as sent, cut short
            exchange.decision = BAD_REQUEST
            exchange.path = refused_path[:MAX_LOGGED_PATH].decode("latin-1")
        exchange.status, exchange.bytes = status, len(body)
        await send_simple(send, status, [*headers, *self.rules.response_headers, (REQUEST_ID, exchange.request_id),
                                         *_close_if_body(scope)], body)

    async def _identify(self, headers: list[tuple[bytes, bytes]], client: str) -> tuple[ActiveSession | None, bool]:
        """The live session named by the cookie, and whether a cookie was sent at all."""
        token = cookie_value(_header(headers, b"cookie"), self.services.cookie.name)
        if token is None:
            return None, False
        session_id = self.services.cookie.load(token)
        if session_id is None:
            return None, True
        user_agent = (_header(headers, b"user-agent") or b"").decode("latin-1")
        try:
            return await self.services.sessions.resolve(session_id, client=client, user_agent=user_agent), True
        except Exception as exc:  # the store is unreachable: fail closed, never guess
            log.error("session lookup failed: %s", type(exc).__name__)
            raise ServiceUnavailable("The session store is unavailable.") from exc

    async def _proxy(self, scope: Scope, receive: Receive, send: Send, canonical: CanonicalPath,
                     exchange: Exchange) -> None:
        headers: list[tuple[bytes, bytes]] = scope["headers"]
        peer_info = scope.get("client")
        peer = peer_info[0] if peer_info else None
        client_ip = exchange.client
        method: str = scope["method"]
        # How the body goes upstream is decided from the head alone, before anything else (400, 413).
        framing = request_framing(method, headers, self._max_body_size)
        active, had_cookie = await self._identify(headers, client_ip)
        principal = active.principal if active else None
        if principal is not None:
            exchange.user = principal.user
        policy = self.services.policy.policy  # read once: one request, one whole policy
        # The app may act on a tunnelled method (X-HTTP-Method-Override): it must be allowed as well.
        decision = decide_tunnelled(policy, principal, method, method_overrides(headers), canonical.decision,
                                    now=self.clock())
        exchange.decision = DECISION_LABEL[decision.outcome]

        if decision.outcome is Outcome.LOGIN or decision.outcome is Outcome.REAUTH:
            await self._ask_for_sign_in(scope, send, exchange, clear_cookie=had_cookie and active is None,
                                        reauth=decision.outcome is Outcome.REAUTH)
            return
        if decision.outcome is not Outcome.ALLOW:
            user = principal.user if principal else None
            self.services.audit.record_aggregated(
                f"denied {client_ip} {user} {method} {canonical.decision}",
                "access.denied", user=user, client=client_ip, method=method,
                path=canonical.decision, reason=decision.reason,
                rule=f"{decision.rule.file}:{decision.rule.line}" if decision.rule else None,
            )
            await self._refuse(scope, send, Forbidden(), exchange, user)
            return

        upstream = self.upstream
        if upstream is None:
            raise ServiceUnavailable()
        outgoing = upstream_request_headers(headers, self.rules, principal=principal, client=peer,
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
            await self._forward(scope, receive, send, canonical, exchange, upstream, method, target, outgoing, body)
        finally:
            self._client_slots.release(client_ip)

    async def _forward(self, scope: Scope, receive: Receive, send: Send, canonical: CanonicalPath, exchange: Exchange,
                       upstream: Upstream, method: str, target: str, outgoing: list[tuple[bytes, bytes]],
                       body: ClientBody | None) -> None:
        headers: list[tuple[bytes, bytes]] = scope["headers"]
        peer_info = scope.get("client")
        peer = peer_info[0] if peer_info else None
        sent_at = time.perf_counter()
        response = await upstream.send(method, target, outgoing, body.__aiter__() if body is not None else None)
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
            public = self._public_origin(scope, headers, peer)
            response_headers = downstream_response_headers(
                response.headers, self.rules, upstream_origin=upstream.origin, public_origin=public,
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

    def _public_origin(self, scope: Scope, headers: list[tuple[bytes, bytes]], peer: str | None) -> str:
        host = _header(headers, b"host")
        return public_origin(
            public_url=self.services.settings.server.public_url, scheme=scope.get("scheme", "http"),
            host=host.decode("latin-1") if host else "", peer=peer,
            forwarded_proto=_last_header(headers, b"x-forwarded-proto"),
            forwarded_host=_last_header(headers, b"x-forwarded-host"), networks=self.rules.trusted_proxies,
        )

    async def _ask_for_sign_in(self, scope: Scope, send: Send, exchange: Exchange, *, clear_cookie: bool,
                               reauth: bool) -> None:
        headers: list[tuple[bytes, bytes]] = scope["headers"]
        extra: list[tuple[bytes, bytes]] = [(REQUEST_ID, exchange.request_id)]
        if clear_cookie:
            # A dead or forged cookie: tell the browser to drop it.
            extra.append((b"set-cookie", self._expire_cookie()))
        if wants_html(_header(headers, b"accept")):
            query: bytes = scope.get("query_string", b"")
            raw_path: bytes = scope["raw_path"]
            original = raw_path.decode("latin-1") + ("?" + query.decode("latin-1") if query else "")
            location = sign_in_url(original) + ("&reauth=1" if reauth else "")
            exchange.status = 302
            extra.extend(_close_if_body(scope))
            await send_simple(send, 302, [(b"location", location.encode()), (b"cache-control", b"no-store"),
                                          (b"content-length", b"0"), *extra, *self.rules.response_headers])
            return
        status, out, body = render_error(ReauthenticationRequired() if reauth else Unauthorized(), False)
        exchange.status, exchange.bytes = status, len(body)
        await send_simple(send, status, [*out, *extra, *self.rules.response_headers, *_close_if_body(scope)], body)

    def _expire_cookie(self) -> bytes:
        name = self.services.cookie.name
        secure = "; Secure" if self.services.settings.session.secure_cookie else ""
        return f"{name}=; Expires=Thu, 01 Jan 1970 00:00:00 GMT; Max-Age=0; Path=/; HttpOnly; SameSite=Lax{secure}".encode()
