"""Errors that carry their HTTP status, and the ONE place that turns them into a response.

Both the Quart views and the raw ASGI proxy path render through ``render_error`` so a browser sees
the same HTML page and an API client the same JSON shape whichever part refused the request.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from gateway.auth import redirects
from gateway.auth.redirects import DEFAULT_NEXT, safe_next
from gateway.pages import DEFAULT_PAGES, Pages

Headers = list[tuple[bytes, bytes]]


class GatewayError(Exception):
    status = 500
    code = "internal_error"
    title = "Something went wrong"
    message = "The gateway could not handle this request."

    def __init__(self, message: str | None = None, *, headers: Sequence[tuple[bytes, bytes]] = ()) -> None:
        super().__init__(message or self.message)
        self.detail = message or self.message
        self.headers = list(headers)


class BadRequest(GatewayError):
    status, code, title, message = 400, "bad_request", "Bad request", "The request is malformed."


class Unauthorized(GatewayError):
    status, code, title, message = 401, "unauthorized", "Sign-in required", "Sign in to continue."


class ReauthenticationRequired(Unauthorized):
    code, title = "reauthentication_required", "Confirm it is you"
    message = "Sign in again to continue: this page needs a recent sign-in."


class Forbidden(GatewayError):
    status, code, title, message = 403, "forbidden", "Access denied", "You are not allowed to open this page."


class NotFound(GatewayError):
    status, code, title, message = 404, "not_found", "Not found", "There is no such gateway page."


class MethodNotAllowed(GatewayError):
    status, code, title, message = 405, "method_not_allowed", "Method not allowed", "This method is not allowed here."


class RequestTimeout(GatewayError):
    status, code, title, message = 408, "request_timeout", "Request too slow", "The request took too long to arrive."


class TooManyRequests(GatewayError):
    status, code, title, message = 429, "too_many_requests", "Too many requests", "Too many requests at once: try again."


class PayloadTooLarge(GatewayError):
    status, code, title, message = 413, "payload_too_large", "Request too large", "The request body is too large."


class UriTooLong(GatewayError):
    status, code, title, message = 414, "uri_too_long", "Address too long", "The requested address is too long."


class BadGateway(GatewayError):
    status, code, title, message = 502, "bad_gateway", "Application unavailable", "The application is not answering."


class ServiceUnavailable(GatewayError):
    status, code, title, message = 503, "unavailable", "Not ready", "The gateway is not ready."


class GatewayTimeout(GatewayError):
    status, code, title, message = 504, "gateway_timeout", "Application too slow", "The application took too long to answer."


_BY_STATUS: dict[int, type[GatewayError]] = {
    cls.status: cls
    for cls in (BadRequest, Unauthorized, Forbidden, NotFound, MethodNotAllowed, RequestTimeout, PayloadTooLarge,
                UriTooLong, TooManyRequests, BadGateway, ServiceUnavailable, GatewayTimeout)
}


def error_for_status(status: int, message: str | None = None) -> GatewayError:
    """Map a framework status (a Quart/werkzeug HTTPException) onto our own error."""
    cls = _BY_STATUS.get(status)
    if cls is None:
        error = GatewayError(message)
        error.status = status
        return error
    return cls(message)


def wants_html(accept: str | bytes | None) -> bool:
    """The contract: an Accept header that includes text/html gets HTML, everything else JSON."""
    if accept is None:
        return False
    if isinstance(accept, bytes):
        accept = accept.decode("latin-1")
    return "text/html" in accept.lower()


_HTML = b"text/html; charset=utf-8"
_JSON = b"application/json"


def switch_user_url(target: tuple[bytes, bytes] | None) -> str:
    """The sign-out page, set to sign in again and come back to ``target`` (raw path, query)."""
    next_path = DEFAULT_NEXT
    if target is not None:
        path, query = target
        next_path = safe_next(path.decode("latin-1") + ("?" + query.decode("latin-1") if query else ""))
    return redirects.switch_user_url(next_path)


def render_error(error: GatewayError, html: bool, user: str | None = None, *, pages: Pages | None = None,
                 target: tuple[bytes, bytes] | None = None) -> tuple[int, Headers, bytes]:
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
    headers: Headers = [(b"content-type", content_type), (b"content-length", str(len(body)).encode())]
    headers.extend(pages.headers)
    headers.extend(error.headers)
    return error.status, headers, body
