"""The ONE place a ``GatewayError`` becomes an answer: an HTML page in the operator's ``[ui]`` look
or the JSON shape, for every way in (the proxy path, a WebSocket handshake, the Quart pages).

``render_error`` makes the (status, headers, body) triple; ``Refusals`` sends it over ASGI with the
headers every answer carries. A request that needs a sign-in is the one exception to "render the
error": a browser (``Accept: text/html``) asking over plain HTTP is redirected to the sign-in page.
"""

from __future__ import annotations

import contextlib
import json

from gateway.errors import GatewayError, ReauthenticationRequired, Unauthorized
from gateway.http import redirects
from gateway.http.headers import REQUEST_ID, HeaderList, declares_body, first_value
from gateway.http.pages import DEFAULT_PAGES, Pages
from gateway.http.types import Scope, Send
from gateway.observe.access import Exchange

__all__ = ["Refusals", "render_error", "send_simple", "switch_user_url", "wants_html"]

_HTML = b"text/html; charset=utf-8"
_JSON = b"application/json"
CLOSE = (b"connection", b"close")
# The ASGI extension that lets a WebSocket handshake be answered with an HTTP status.
WEBSOCKET_HTTP_RESPONSE = "websocket.http.response"
POLICY_VIOLATION = 1008


def wants_html(accept: str | bytes | None) -> bool:
    """The contract: an Accept header that includes text/html gets HTML, everything else JSON."""
    if accept is None:
        return False
    if isinstance(accept, bytes):
        accept = accept.decode("latin-1")
    return "text/html" in accept.lower()


def switch_user_url(target: tuple[bytes, bytes] | None) -> str:
    """The sign-out page, set to sign in again and come back to ``target`` (raw path, query)."""
    next_path = redirects.DEFAULT_NEXT
    if target is not None:
        path, query = target
        next_path = redirects.safe_next(path.decode("latin-1") + ("?" + query.decode("latin-1") if query else ""))
    return redirects.switch_user_url(next_path)


def render_error(error: GatewayError, html: bool, user: str | None = None, *, pages: Pages | None = None,
                 target: tuple[bytes, bytes] | None = None) -> tuple[int, HeaderList, bytes]:
    """The error as (status, headers, body): an HTML page or the JSON shape.

    ``pages`` carries the operator's ``[ui]`` (the default look without it); ``target``, the raw
    path and query asked for, lets a 403 page offer to sign in as someone else and come back.
    Templates are compiled at start-up; pages that name no user are rendered once and reused."""
    pages = pages or DEFAULT_PAGES
    if not html:
        body = json.dumps({"error": error.code, "message": error.detail}).encode()
        content_type = _JSON
    else:
        body = pages.error_page(error.status, error.title, error.detail, user,
                                switch_user_url(target) if user is not None else None)
        content_type = _HTML
    headers: HeaderList = [(b"content-type", content_type), (b"content-length", str(len(body)).encode())]
    headers.extend(pages.headers)
    headers.extend(error.headers)
    return error.status, headers, body


async def send_simple(send: Send, status: int, headers: HeaderList, body: bytes = b"") -> None:
    """A whole answer in two messages: its head, then its body."""
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})


def _close_if_body(scope: Scope) -> tuple[tuple[bytes, bytes], ...]:
    """``Connection: close`` for a refusal of a request that declared a body: the body may be
    unread (or still arriving, a byte at a time), and the connection must not stay open for it."""
    return (CLOSE,) if declares_body(scope["headers"]) else ()


class Refusals:
    """Refusals for one gateway: its ``[ui]`` pages and the headers every answer carries (HSTS)."""

    def __init__(self, pages: Pages, response_headers: tuple[tuple[bytes, bytes], ...] = ()) -> None:
        self.pages = pages
        self.response_headers = response_headers

    async def http(self, scope: Scope, send: Send, error: GatewayError, exchange: Exchange) -> None:
        """Answer an HTTP request with ``error``, noting the status and size in its access line."""
        headers: HeaderList = scope["headers"]
        html = wants_html(first_value(headers, b"accept"))
        target = (scope.get("raw_path") or b"", scope.get("query_string", b""))
        if html and isinstance(error, Unauthorized):
            await self._sign_in(scope, send, error, exchange, target)
            return
        status, out, body = render_error(error, html, error.user, pages=self.pages, target=target)
        exchange.status, exchange.bytes = status, len(body)
        await send_simple(send, status, [*out, *self.response_headers, (REQUEST_ID, exchange.request_id),
                                         *_close_if_body(scope)], body)

    async def _sign_in(self, scope: Scope, send: Send, error: Unauthorized, exchange: Exchange,
                       target: tuple[bytes, bytes]) -> None:
        """A browser without a (recent enough) sign-in: 302 to the sign-in page, which comes back here."""
        path, query = target
        original = path.decode("latin-1") + ("?" + query.decode("latin-1") if query else "")
        location = redirects.sign_in_url(original) + ("&reauth=1" if isinstance(error, ReauthenticationRequired) else "")
        exchange.status = 302
        await send_simple(send, 302, [(b"location", location.encode()), (b"cache-control", b"no-store"),
                                      (b"content-length", b"0"), (REQUEST_ID, exchange.request_id), *error.headers,
                                      *_close_if_body(scope), *self.response_headers])

    async def websocket(self, scope: Scope, send: Send, error: GatewayError) -> None:
        """Answer a WebSocket handshake with the error's status (no redirect: a WebSocket client cannot
        follow one), or, without the ASGI extension, a bare close (which the server makes a 403)."""
        with contextlib.suppress(OSError):  # the client may be gone already
            if WEBSOCKET_HTTP_RESPONSE not in (scope.get("extensions") or {}):
                await send({"type": "websocket.close", "code": POLICY_VIOLATION})
                return
            accept = first_value([(name.lower(), value) for name, value in scope["headers"]], b"accept")
            status, headers, body = render_error(error, wants_html(accept), error.user, pages=self.pages)
            await send({"type": "websocket.http.response.start", "status": status, "headers": headers})
            await send({"type": "websocket.http.response.body", "body": body, "more_body": False})
