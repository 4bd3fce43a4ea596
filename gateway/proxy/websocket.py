"""The WebSocket relay: a handshake admitted like an HTTP GET (the dispatcher's ``admit``, given
here as a callback) is relayed to the upstream, then messages flow both ways until either end
closes or the admission no longer holds.

A refused handshake never reaches the upstream. While a socket is open the ``recheck`` it was
admitted with is asked again about once a second, so a revoked session, a disabled user, a changed
role or a changed policy ends the socket too (close code 1008), not only the next page load.

Memory: no permessage-deflate on either leg (see gateway/server.py), each library reads ahead about
one message, and the messages the relays hold are counted against one budget per process
(proxy/memory.py); a message that does not fit closes its socket with 1013.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from websockets.asyncio.client import ClientConnection, connect
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidHeader, InvalidStatus
from websockets.typing import Subprotocol
from websockets.uri import WebSocketURI

from gateway.config import UpstreamSettings
from gateway.errors import BadGateway, BadRequest, GatewayError, GatewayTimeout
from gateway.http import HeaderList, RawHeaders, Receive, Refusals, Scope, Send, first_value, peer_of
from gateway.observe import Exchange, Metrics
from gateway.policy import CanonicalPath, Principal
from gateway.proxy.errors import fingerprint
from gateway.proxy.headers import HeaderRules, upstream_request_headers
from gateway.proxy.memory import MemoryBudget

__all__ = ["Admitted", "WebSocketRelay", "handshake_headers", "sendable_close_code", "upstream_uri"]

log = logging.getLogger("gateway.proxy")

RECHECK_INTERVAL = 1.0  # seconds between session and policy re-checks of an open socket

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


@dataclass(frozen=True, slots=True)
class _End:
    """How a relay ended: the close to send each side (None where that side is already gone)."""

    client: tuple[int, str] | None
    upstream: tuple[int, str] | None


# A message did not fit in the memory budget: the browser may retry later; the app sees the relay go.
_OVER_BUDGET = _End(client=(TRY_AGAIN_LATER, "gateway busy"), upstream=(GOING_AWAY, ""))


@dataclass(frozen=True, slots=True)
class Admitted:
    """A handshake the dispatcher admitted: where it goes, who it is, and how to ask again."""

    canonical: CanonicalPath
    principal: Principal | None
    recheck: Callable[[], Awaitable[str | None]]  # why the socket must close now, or None


class _UpstreamConnect(connect):
    def process_redirect(self, exc: Exception) -> Exception | str:
        # Never follow a redirect: the policy decided on this path, not on the one a 3xx names.
        return exc


class WebSocketRelay:
    """Relays the WebSockets of one process; their messages share one memory budget."""

    def __init__(self, upstream: UpstreamSettings, rules: HeaderRules, metrics: Metrics, refusals: Refusals) -> None:
        self.upstream = upstream
        self.rules = rules
        self.metrics = metrics
        self.refusals = refusals
        # Shared by every relay of this process (one event loop: a counter, no lock).
        self.memory = MemoryBudget(upstream.websocket_memory, metrics.websocket_memory.set)

    async def __call__(self, scope: Scope, receive: Receive, send: Send, exchange: Exchange,
                       admit: Callable[[], Awaitable[Admitted]]) -> None:
        """Serve one WebSocket handshake (scope type "websocket") from start to close.

        ``admit`` runs the checks of an HTTP GET and raises the GatewayError to refuse with; ``send``
        notes the status and bytes in ``exchange`` itself (http/io.py's recording_send)."""
        first = await receive()
        if first["type"] != "websocket.connect":
            return
        accepted = False
        metrics = self.metrics
        try:
            admitted = await admit()
            started = time.perf_counter()
            upstream = await open_upstream(self.upstream, self.rules, scope, admitted, exchange.request_id)
            exchange.upstream = time.perf_counter() - started  # the upstream's handshake answer
            try:
                await send({"type": "websocket.accept", "subprotocol": upstream.subprotocol})
                accepted = True
                metrics.websockets.inc()
                metrics.websockets_open.inc()
                try:
                    end = await pump(self.metrics, self.memory, admitted, receive, send, upstream)
                finally:
                    metrics.websockets_open.dec()
                if end.upstream is not None:
                    await _close_draining(upstream, *end.upstream)
            finally:
                await _close_quietly(upstream)
        except GatewayError as exc:
            if not accepted:
                await self.refusals.websocket(scope, send, exc)
        except OSError:
            pass  # the client went away (Uvicorn's ClientDisconnected); the upstream is closed above
        except Exception:
            # A bug must still fail closed: refuse, or close with "internal error", never hang.
            log.exception("unexpected error in the WebSocket relay")
            if accepted:
                with contextlib.suppress(Exception):
                    await send({"type": "websocket.close", "code": INTERNAL_ERROR})
            else:
                await self.refusals.websocket(scope, send, GatewayError())

async def open_upstream(upstream: UpstreamSettings, rules: HeaderRules, scope: Scope, admitted: Admitted,
                        request_id: bytes) -> ClientConnection:
    """The upstream's side of the socket, opened with the identity headers; 502/504 when it refuses."""
    # ASGI promises lower-case names and Uvicorn keeps that; lower-cased anyway (see the dispatcher).
    headers: HeaderList = [(name.lower(), value) for name, value in scope["headers"]]
    query = scope.get("query_string", b"").decode("latin-1")  # as the client sent it, like the HTTP path
    outgoing = handshake_headers(headers, rules, principal=admitted.principal, client=peer_of(scope),
                                 scheme=scope.get("scheme", "ws"), request_id=request_id)
    try:
        handshake = Headers([(name.decode("latin-1"), value.decode("latin-1")) for name, value in outgoing])
        subprotocols = [Subprotocol(p) for p in scope.get("subprotocols") or ()]
        target = upstream_uri(upstream.url, admitted.canonical.forward, query,
                              host_header=first_value(headers, b"host"), preserve_host=rules.preserve_host)
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


async def pump(metrics: Metrics, budget: MemoryBudget, admitted: Admitted, receive: Receive, send: Send,
               upstream: ClientConnection) -> _End:
    """Relay both ways and watch the admission; the first of the three to finish ends the socket."""
    tasks = [
        asyncio.create_task(_client_to_upstream(receive, upstream, budget)),
        asyncio.create_task(_upstream_to_client(upstream, send, budget)),
        asyncio.create_task(_watch(admitted)),
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
        metrics.websocket_memory_closes.inc()
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


async def _watch(admitted: Admitted) -> _End:
    """Ask the admission again until the socket may no longer stay open."""
    while True:
        await asyncio.sleep(RECHECK_INTERVAL)
        try:
            reason = await admitted.recheck()
        except Exception as exc:  # the session store is unreachable: fail closed
            log.error("session re-check failed: %s; WebSocket closed", type(exc).__name__)
            return _End(client=(INTERNAL_ERROR, ""), upstream=(GOING_AWAY, ""))
        if reason is not None:
            user = admitted.principal.user if admitted.principal else None
            log.info("WebSocket to %s closed: %s (user %s)", admitted.canonical.decision, reason, user)
            return _End(client=(POLICY_VIOLATION, reason), upstream=(POLICY_VIOLATION, reason))


async def _close_draining(upstream: ClientConnection, code: int = NORMAL, reason: str = "") -> None:
    """The closing handshake with the app, reading (and dropping) what it still sends meanwhile.

    The upstream leg reads ahead one message at most (max_queue=1) and then stops reading the
    socket; once the relay no longer takes messages, an app that keeps sending (a kernel's status
    messages, a feed) would leave its close frame unread behind them, and close() would wait its
    whole close_timeout (10 s) for it: a client gone, or a gateway stopping, held a relay that long.
    """
    drain = asyncio.create_task(_discard(upstream))
    try:
        await upstream.close(code, reason)
    finally:
        drain.cancel()
        await asyncio.gather(drain, return_exceptions=True)


async def _discard(upstream: ClientConnection) -> None:
    with contextlib.suppress(ConnectionClosed):
        async for _ in upstream:
            pass


async def _close_quietly(upstream: ClientConnection) -> None:
    try:
        await _close_draining(upstream)
    except asyncio.CancelledError:
        upstream.transport.abort()
        raise
    except Exception:
        upstream.transport.abort()
