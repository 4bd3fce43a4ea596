"""Errors that carry their HTTP status, and the ONE place that turns them into a response.

Both the Quart views and the raw ASGI proxy path render through ``render_error`` so a browser sees
the same HTML page and an API client the same JSON shape whichever part refused the request.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from gateway.pages import PAGE_HEADERS, render_page

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
    for cls in (BadRequest, Unauthorized, Forbidden, NotFound, MethodNotAllowed, PayloadTooLarge, UriTooLong,
                BadGateway, ServiceUnavailable, GatewayTimeout)
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


def render_error(error: GatewayError, html: bool, user: str | None = None) -> tuple[int, Headers, bytes]:
    if html:
        body = render_page("error.html", title=error.title, message=error.detail, status=error.status, user=user)
        content_type = b"text/html; charset=utf-8"
    else:
        body = json.dumps({"error": error.code, "message": error.detail}).encode()
        content_type = b"application/json"
    headers: Headers = [(b"content-type", content_type), (b"content-length", str(len(body)).encode())]
    headers.extend(PAGE_HEADERS)
    headers.extend(error.headers)
    return error.status, headers, body
