"""The Quart side's error answers: every error a gateway page raises is rendered by http/refuse.py,
the same page or JSON shape the proxy path answers with."""

from __future__ import annotations

import logging

from quart import Quart, Response, request
from werkzeug.exceptions import HTTPException

from gateway.errors import GatewayError, ServiceUnavailable, error_for_status
from gateway.http import render_error, wants_html
from gateway.services import current_services
from gateway.store.base import StoreError

__all__ = ["error_response", "register_error_handlers"]

log = logging.getLogger("gateway")


def error_response(error: GatewayError) -> Response:
    services = current_services()
    status, headers, body = render_error(error, wants_html(request.headers.get("Accept")), pages=services.pages)
    response = Response(body, status=status)
    for name, value in headers:
        if name != b"content-length":
            response.headers[name.decode()] = value.decode()
    return response


def register_error_handlers(app: Quart) -> None:
    @app.errorhandler(GatewayError)
    async def gateway_error(error: GatewayError) -> Response:
        return error_response(error)

    @app.errorhandler(StoreError)
    async def store_unavailable(error: StoreError) -> Response:
        # Busy past the busy timeout, unreachable, or holding data it cannot read (a damaged Redis
        # key): say so (503), as the proxied path does; never guess, never a bare 500.
        log.error("store unavailable: %s", error)
        return error_response(ServiceUnavailable("The gateway's store is busy. Try again in a moment."))

    @app.errorhandler(HTTPException)
    async def http_error(error: HTTPException) -> Response:
        return error_response(error_for_status(error.code or 500))

    @app.errorhandler(Exception)
    async def unexpected(error: Exception) -> Response:
        log.exception("unexpected error on a gateway page")
        return error_response(GatewayError())
