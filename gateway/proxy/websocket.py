"""The WebSocket relay: the handshake passes the same checks as an HTTP GET, then messages flow both
ways until either end closes or the session stops being allowed.

A refused handshake never reaches the upstream. While a socket is open its session and the policy
are checked again about once a second, so a revoked session, a disabled user, a changed role or a
changed policy ends the socket too (close code 1008), not only the next page load.

Memory: no permessage-deflate on either leg (see gateway/server.py), each library reads ahead about
one message, and the messages the relays hold are counted against one budget per process
(gateway/proxy/memory.py); a message that does not fit closes its socket with 1013.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from websockets.asyncio.client import ClientConnection, connect
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidHeader, InvalidStatus
from websockets.typing import Subprotocol
from websockets.uri import WebSocketURI

from gateway.auth.cookie import cookie_value
from gateway.auth.csrf import origin_allowed
from gateway.errors import (
    BadGateway,
    BadRequest,
    Forbidden,
    GatewayError,
    GatewayTimeout,
    NotFound,
    ReauthenticationRequired,
    Unauthorized,
    render_error,
    wants_html,
)
from gateway.policy import CanonicalPath, Decision, Outcome, Policy, Principal, decide_tunnelled
from gateway.policy.paths import origin_form
from gateway.proxy.forward import fingerprint
from gateway.proxy.headers import HeaderList, HeaderRules, RawHeaders, method_overrides, upstream_request_headers
from gateway.proxy.memory import MemoryBudget

if TYPE_CHECKING:
    from gateway.access import Exchange
    from gateway.asgi import Gateway

log = logging.getLogger("gateway.proxy")

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

RECHECK_INTERVAL = 1.0  # seconds between session and policy re-checks of an open socket
HTTP_RESPONSE = "websocket.http.response"  # the ASGI extension for answering a handshake with a status

# Close codes (RFC 6455 section 7.4).
NORMAL, GOING_AWAY, POLICY_VIOLATION, INTERNAL_ERROR, BAD_GATEWAY = 1000, 1001, 1008, 1011, 1014
TRY_AGAIN_LATER = 1013
MESSAGE_TOO_BIG = 1009
NO_STATUS = 1005  # reported by a library for a close frame without a code; never sent itself
_SENDABLE = frozenset({1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014})


def sendable_close_code(code: int | None, fallback: int) -> int:
    """A code that may travel in a close frame: the one given, 1000 for "no status", else ``fallback``."""
    if code is None:
        return fallback
    if code in _SENDABLE or 3000 <= code <= 4999:
        return code
    return NORMAL if code == NO_STATUS else fallback


def handshake_headers(
    headers: RawHeaders, rules: HeaderRules, *, principal: Principal | None, client: str | None, scheme: str,
    request_id: bytes | None = None,
) -> HeaderList:
    """The headers of the upstream handshake, apart from those the WebSocket client writes itself.

    The HTTP rules apply unchanged (no client copy of an identity header, no gateway cookie, no
    untrusted routing header, the identity of the signed-in user); then Host and the client's own
    handshake (Sec-WebSocket-*: key, version, extensions, protocol) are left out, because the upstream
    leg is a handshake of its own: the client library writes Host from the URI, a fresh key, its own
    extensions, and the subprotocols it is given.
    """
    http_scheme = {"ws": "http", "wss": "https"}.get(scheme, scheme)
    out = upstream_request_headers(headers, rules, principal=principal, client=client, scheme=http_scheme,
                                   request_id=request_id)
    return [(name, value) for name, value in out
            if name != b"host" and not name.startswith(b"sec-websocket-")]


def decision_for(policy: Policy, principal: Principal | None, path: str, headers: RawHeaders) -> Decision:
    """The policy's word on a handshake: a GET, and any method it asks the app to use instead."""
    return decide_tunnelled(policy, principal, "GET", method_overrides(headers), path)


def lost_access(decision: Decision, now: Principal | None, then: Principal | None) -> str | None:
    """Why an open socket must close (pure), or None while it may stay open.

    ``then`` is the principal the upstream was told about in the handshake. Once the identity headers
    it was given are no longer true (the session ended, or the roles changed) the socket closes even
    if the policy would still allow it: the client reconnects and the app hears the truth.
    """
    if then is not None:
        if now is None:
            return "session ended"
        if now.user != then.user or now.roles != then.roles:
            return "roles changed"
    if not decision.allowed:
        return "no longer allowed"
    return None


@dataclass(frozen=True, slots=True)
class _End:
    """How a relay ended: the close to send each side (None where that side is already gone)."""

    client: tuple[int, str] | None
    upstream: tuple[int, str] | None


# A message did not fit in the memory budget: the browser may retry later; the app sees the relay go.
_OVER_BUDGET = _End(client=(TRY_AGAIN_LATER, "gateway busy"), upstream=(GOING_AWAY, ""))


@dataclass(frozen=True, slots=True)
class _Admitted:
    canonical: CanonicalPath
    query: str  # as the client sent it, like the HTTP path forwards it
    headers: HeaderList  # the client's, names lower-cased
    principal: Principal | None
    session_id: str | None  # for the re-checks; None for an anonymous socket
    client_ip: str
    user_agent: str


class _UpstreamConnect(connect):
    def process_redirect(self, exc: Exception) -> Exception | str:
        # Never follow a redirect: the policy decided on this path, not on the one a 3xx names.
        return exc


async def relay(gateway: Gateway, scope: Scope, receive: Receive, send: Send, exchange: Exchange) -> None:
    """Serve one WebSocket handshake (scope type "websocket") from start to close.

    ``exchange`` is the access-log record: filled in here (path, user, decision); ``send`` notes
    the status and bytes itself (gateway.asgi.recording_send)."""
    first = await receive()
    if first["type"] != "websocket.connect":
        return
    accepted = False
    metrics = gateway.metrics
    try:
        admitted = await _admit(gateway, scope, exchange)
        started = time.perf_counter()
        upstream = await _open_upstream(gateway, scope, admitted, exchange.request_id)
        exchange.upstream = time.perf_counter() - started  # the upstream's handshake answer
        try:
            await send({"type": "websocket.accept", "subprotocol": upstream.subprotocol})
            accepted = True
            metrics.websockets.inc()
            metrics.websockets_open.inc()
            try:
                end = await _pump(gateway, admitted, receive, send, upstream)
            finally:
                metrics.websockets_open.dec()
            if end.upstream is not None:
                await upstream.close(*end.upstream)
        finally:
            await _close_quietly(upstream)
    except GatewayError as exc:
        if not accepted:
            await _refuse(scope, send, exc)
    except OSError:
        pass  # the client went away (Uvicorn's ClientDisconnected); the upstream is closed above
    except Exception:
        # A bug must still fail closed: refuse, or close with "internal error", never hang.
        log.exception("unexpected error in the WebSocket relay")
        if accepted:
            with contextlib.suppress(Exception):
                await send({"type": "websocket.close", "code": INTERNAL_ERROR})
        else:
            await _refuse(scope, send, GatewayError())


async def _admit(gateway: Gateway, scope: Scope, exchange: Exchange) -> _Admitted:
    """The checks of an HTTP GET, in the same order; raises the GatewayError to answer with."""
    # Here: gateway.asgi imports this module.
    from gateway.asgi import DECISION_LABEL, MAX_LOGGED_PATH, is_gateway_page
    from gateway.metrics import BAD_REQUEST, GATEWAY_PAGE

    # ASGI promises lower-case names and Uvicorn keeps that; lower-cased anyway, because the cookie
    # lookup compares exactly and a server that forgot would otherwise make every socket anonymous.
    headers: HeaderList = [(name.lower(), value) for name, value in scope["headers"]]
    raw_path = origin_form(scope.get("raw_path") or scope["path"].encode())
    exchange.decision, exchange.path = BAD_REQUEST, raw_path[:MAX_LOGGED_PATH].decode("latin-1")
    gateway.check_host(scope)
    canonical = gateway.canonical_target(raw_path, scope.get("query_string", b""))
    exchange.path = canonical.decision
    if is_gateway_page(canonical):
        exchange.decision = GATEWAY_PAGE
        raise NotFound("The gateway's own pages do not take WebSockets.")

    exchange.decision = "error"  # until the policy decides (the session store may fail first)
    client_ip = exchange.client  # the same address the HTTP path uses (gateway.asgi computed it)
    active, had_cookie = await gateway._identify(headers, client_ip)
    if active is not None:
        # Cross-site WebSocket hijacking: a page on another site opening a socket here would ride on
        # the user's cookie (browsers apply no CORS to WebSockets). Browsers always send Origin on
        # a handshake; clients that are not browsers send none and are not affected.
        origin = _header(headers, b"origin")
        ws_scope = dict(scope, scheme="https" if scope.get("scheme") == "wss" else "http")
        peer = scope["client"][0] if scope.get("client") else None
        if origin is not None and not origin_allowed(origin.decode("latin-1"), gateway._public_origin(ws_scope, headers, peer)):
            raise Forbidden("A WebSocket from another site may not use this session.")
    principal = active.principal if active else None
    if principal is not None:
        exchange.user = principal.user
    decision = decision_for(gateway.services.policy.policy, principal, canonical.decision, headers)
    exchange.decision = DECISION_LABEL[decision.outcome]
    if decision.outcome is Outcome.LOGIN or decision.outcome is Outcome.REAUTH:
        # No redirect to the sign-in page: a WebSocket client cannot follow one.
        extra = [(b"set-cookie", gateway._expire_cookie())] if had_cookie and active is None else []
        error = ReauthenticationRequired if decision.outcome is Outcome.REAUTH else Unauthorized
        raise error(headers=extra)
    if decision.outcome is not Outcome.ALLOW:
        user = principal.user if principal else None
        gateway.services.audit.record_aggregated(
            f"denied {client_ip} {user} WEBSOCKET {canonical.decision}",
            "access.denied", user=user, client=client_ip, method="GET", websocket=True,
            path=canonical.decision, reason=decision.reason,
            rule=f"{decision.rule.file}:{decision.rule.line}" if decision.rule else None,
        )
        raise Forbidden()

    session_id = None
    if active is not None:
        token = cookie_value(_header(headers, b"cookie"), gateway.services.cookie.name)
        session_id = gateway.services.cookie.load(token) if token else None
    user_agent = (_header(headers, b"user-agent") or b"").decode("latin-1")
    query = scope.get("query_string", b"").decode("latin-1")
    return _Admitted(canonical, query, headers, principal, session_id, client_ip, user_agent)


async def _open_upstream(gateway: Gateway, scope: Scope, admitted: _Admitted, request_id: bytes) -> ClientConnection:
    """The upstream's side of the socket, opened with the identity headers; 502/504 when it refuses."""
    upstream = gateway.services.settings.upstream
    peer_info = scope.get("client")
    outgoing = handshake_headers(admitted.headers, gateway.rules, principal=admitted.principal,
                                 client=peer_info[0] if peer_info else None, scheme=scope.get("scheme", "ws"),
                                 request_id=request_id)
    try:
        handshake = Headers([(name.decode("latin-1"), value.decode("latin-1")) for name, value in outgoing])
        subprotocols = [Subprotocol(p) for p in scope.get("subprotocols") or ()]
        target = upstream_uri(upstream.url, admitted.canonical.forward, admitted.query,
                              host_header=_header(admitted.headers, b"host"), preserve_host=gateway.rules.preserve_host)
    except (InvalidHeader, ValueError) as exc:
        raise BadRequest("The request cannot be forwarded.") from exc

    origin = urlsplit(upstream.url)
    secure = origin.scheme == "https"
    host = origin.hostname or "127.0.0.1"
    port = origin.port or (443 if secure else 80)
    # TLS names the configured upstream too, not a preserved browser Host.
    tls: dict[str, Any] = {"server_hostname": host} if secure else {}
    connector = _UpstreamConnect(
        ("wss://" if secure else "ws://") + origin.netloc + "/",
        subprotocols=subprotocols or None,
        additional_headers=handshake,
        user_agent_header=None,  # the client's own User-Agent is among the headers, or none at all
        proxy=None,  # environment proxies never apply: the upstream is the configured address only
        # No permessage-deflate on this leg either: the app's messages are not inflated here (a
        # compression bomb from the app or anyone who can make it echo one), and the leg is usually
        # local, where compressing costs CPU and saves nothing.
        compression=None,
        open_timeout=upstream.connect_timeout,
        max_size=upstream.websocket_max_message,
        # Reading from the app pauses once more than one frame waits for the relay (the library's
        # default is 16 frames, each up to max_size).
        max_queue=1,
        # The TCP connection goes to the configured upstream whatever Host the URI below carries.
        host=host,
        port=port,
        **tls,
    )
    # The exact path and query the policy decided on: parsing a URI string would re-read them
    # (urllib drops ";" parameters of the last segment, for one).
    connector.ws_uri = target
    try:
        return await connector
    except TimeoutError as exc:
        log.warning("upstream WebSocket handshake too slow: %s", admitted.canonical.decision)
        raise GatewayTimeout() from exc
    except InvalidStatus as exc:
        log.warning("upstream refused the WebSocket handshake for %s with status %d",
                    admitted.canonical.decision, exc.response.status_code)
        raise BadGateway() from exc
    except (OSError, InvalidHandshake) as exc:
        # The library's text can quote the app's header bytes and the URI with its query string.
        log.warning("upstream WebSocket handshake failed for %s: %s (detail %s)", admitted.canonical.decision,
                    type(exc).__name__, fingerprint(str(exc)))
        raise BadGateway() from exc


def upstream_uri(upstream_url: str, path: str, query: str, *, host_header: bytes | None, preserve_host: bool) -> WebSocketURI:
    """Where the upstream handshake goes (pure): the canonical path and raw query, and as Host the
    upstream's address or, with preserve_host, the browser's. Raises ValueError for a bad Host."""
    origin = urlsplit(upstream_url)
    secure = origin.scheme == "https"
    host, port = origin.hostname or "", origin.port
    if preserve_host and host_header:
        given = urlsplit("//" + host_header.decode("latin-1"))
        if not given.hostname or given.path or given.query or given.fragment or given.username:
            raise ValueError("bad Host header")
        host, port = given.hostname, given.port  # .port raises ValueError for a bad port
    return WebSocketURI(secure, host, port or (443 if secure else 80), path, query)


async def _pump(gateway: Gateway, admitted: _Admitted, receive: Receive, send: Send,
                upstream: ClientConnection) -> _End:
    """Relay both ways and watch the session; the first of the three to finish ends the socket."""
    budget = gateway.websocket_memory
    tasks = [
        asyncio.create_task(_client_to_upstream(receive, upstream, budget)),
        asyncio.create_task(_upstream_to_client(upstream, send, budget)),
        asyncio.create_task(_watch(gateway, admitted)),
    ]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    finished = next(task for task in tasks if task in done)
    error = finished.exception()
    if error is not None:
        log.error("WebSocket relay failed: %s (detail %s)", type(error).__name__, fingerprint(str(error)))
        end = _End(client=(INTERNAL_ERROR, ""), upstream=(INTERNAL_ERROR, ""))
    else:
        end = finished.result()
    if end is _OVER_BUDGET:
        gateway.metrics.websocket_memory_closes.inc()
        log.warning("WebSocket to %s closed with 1013: upstream.websocket_memory (%d bytes) is in use",
                    admitted.canonical.decision, budget.limit)
    if end.client is not None:
        with contextlib.suppress(OSError):  # the client may have gone meanwhile
            await send({"type": "websocket.close", "code": end.client[0], "reason": end.client[1]})
    return end


async def _client_to_upstream(receive: Receive, upstream: ClientConnection, budget: MemoryBudget) -> _End:
    while True:
        message = await receive()
        kind = message["type"]
        if kind == "websocket.receive":
            text = message.get("text")
            data: str | bytes = text if text is not None else message.get("bytes") or b""
            if not budget.take(len(data)):
                return _OVER_BUDGET
            try:
                await upstream.send(data)  # returns once the client's write buffer has drained
            except ConnectionClosed:
                return _upstream_closed(upstream)
            finally:
                budget.give_back(len(data))
        elif kind == "websocket.disconnect":
            code = sendable_close_code(message.get("code"), GOING_AWAY)
            return _End(client=None, upstream=(code, message.get("reason") or ""))


async def _upstream_to_client(upstream: ClientConnection, send: Send, budget: MemoryBudget) -> _End:
    try:
        async for message in upstream:
            if not budget.take(len(message)):
                return _OVER_BUDGET
            try:
                # Counted while the server waits for room in its write buffer (a client that reads
                # slowly), until it has accepted the message.
                if isinstance(message, str):
                    await send({"type": "websocket.send", "text": message})
                else:
                    await send({"type": "websocket.send", "bytes": message})
            finally:
                budget.give_back(len(message))
    except ConnectionClosed:
        pass
    except OSError:  # the client went away while a message was on its way to it
        return _End(client=None, upstream=(GOING_AWAY, ""))
    return _upstream_closed(upstream)


def _upstream_closed(upstream: ClientConnection) -> _End:
    received = upstream.protocol.close_rcvd
    sent = upstream.protocol.close_sent
    if received is None and sent is not None and sent.code == MESSAGE_TOO_BIG:
        # The relay's own client refused an oversized message from the app: tell the browser the same.
        return _End(client=(MESSAGE_TOO_BIG, sent.reason), upstream=None)
    if received is None:  # the upstream vanished, or broke the protocol: not the client's doing
        return _End(client=(BAD_GATEWAY, ""), upstream=None)
    return _End(client=(sendable_close_code(received.code, BAD_GATEWAY), received.reason), upstream=None)


async def _watch(gateway: Gateway, admitted: _Admitted) -> _End:
    """Re-check the session and the policy until the socket may no longer stay open."""
    services = gateway.services
    while True:
        await asyncio.sleep(RECHECK_INTERVAL)
        principal = None
        if admitted.session_id is not None:
            try:
                active = await services.sessions.resolve(admitted.session_id, client=admitted.client_ip,
                                                         user_agent=admitted.user_agent)
            except Exception as exc:  # the store is unreachable: fail closed
                log.error("session re-check failed: %s; WebSocket closed", type(exc).__name__)
                return _End(client=(INTERNAL_ERROR, ""), upstream=(GOING_AWAY, ""))
            principal = active.principal if active else None
        decision = decision_for(services.policy.policy, principal, admitted.canonical.decision, admitted.headers)
        reason = lost_access(decision, principal, admitted.principal)
        if reason is not None:
            user = admitted.principal.user if admitted.principal else None
            log.info("WebSocket to %s closed: %s (user %s)", admitted.canonical.decision, reason, user)
            return _End(client=(POLICY_VIOLATION, reason), upstream=(POLICY_VIOLATION, reason))


async def _close_quietly(upstream: ClientConnection) -> None:
    try:
        await upstream.close()
    except asyncio.CancelledError:
        upstream.transport.abort()
        raise
    except Exception:
        upstream.transport.abort()


async def _refuse(scope: Scope, send: Send, error: GatewayError) -> None:
    """Answer the handshake with the error's status, or, without the ASGI extension, a bare close."""
    if HTTP_RESPONSE not in (scope.get("extensions") or {}):
        # The server turns a close before accept into a 403: the best a server without it allows.
        with contextlib.suppress(OSError):
            await send({"type": "websocket.close", "code": POLICY_VIOLATION})
        return
    accept = _header([(k.lower(), v) for k, v in scope["headers"]], b"accept")
    status, headers, body = render_error(error, wants_html(accept))
    with contextlib.suppress(OSError):
        await send({"type": "websocket.http.response.start", "status": status, "headers": headers})
        await send({"type": "websocket.http.response.body", "body": body, "more_body": False})


def _header(headers: Sequence[tuple[bytes, bytes]], name: bytes) -> bytes | None:
    for key, value in headers:
        if key == name:
            return value
    return None
