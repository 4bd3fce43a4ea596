"""Errors that carry their HTTP status (pure). gateway/http/refuse.py is the one place that turns
them into an answer, for every way in."""

from __future__ import annotations

from collections.abc import Sequence

Headers = list[tuple[bytes, bytes]]


class GatewayError(Exception):
    status = 500
    code = "internal_error"
    title = "Something went wrong"
    message = "The gateway could not handle this request."

    def __init__(self, message: str | None = None, *, headers: Sequence[tuple[bytes, bytes]] = (),
                 user: str | None = None) -> None:
        super().__init__(message or self.message)
        self.detail = message or self.message
        self.headers = list(headers)  # sent with the answer (Retry-After, a Set-Cookie that clears)
        self.user = user  # the signed-in user the page names (a 403 offers to sign in as someone else)


class BadRequest(GatewayError):
    status, code, title, message = 400, "bad_request", "Bad request", "The request is malformed."


class Unauthorized(GatewayError):
    status, code, title, message = 401, "unauthorized", "Sign-in required", "Sign in to continue."


class ReauthenticationRequired(Unauthorized):
    code, title = "reauthentication_required", "Confirm it is you"
    message = "Sign in again to continue: this page needs a recent sign-in."


class MfaRequired(GatewayError):
    """A `mfa: true` route and a session that has not passed a second factor. Not an Unauthorized:
    signing in again would not help (browsers are not sent to the sign-in page)."""

    status, code, title = 401, "mfa_required", "Second factor required"
    message = "This page needs a second factor (an authenticator app or a passkey)."


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
