"""The proxy's own words for an upstream that failed. Each transport translates its client library's
exceptions into these where they enter (once); ``gateway_error`` says what the browser is told."""

from __future__ import annotations

import hashlib
import logging

from gateway.errors import BadGateway, BadRequest, GatewayError, GatewayTimeout, ServiceUnavailable

__all__ = [
    "RequestNotForwardable", "UpstreamConnectError", "UpstreamError", "UpstreamPoolFull", "UpstreamProtocolError",
    "UpstreamReadError", "UpstreamTimeout", "fingerprint", "gateway_error",
]

log = logging.getLogger("gateway.proxy")


class UpstreamError(Exception):
    """The upstream could not be asked, or did not answer properly."""


class UpstreamConnectError(UpstreamError):
    """No connection to the upstream (refused, unreachable, TLS failed)."""


class UpstreamProtocolError(UpstreamError):
    """The upstream broke the protocol or dropped the connection before its answer's head."""


class UpstreamReadError(UpstreamError):
    """The upstream's response body broke off."""


class UpstreamTimeout(UpstreamError):
    """The upstream took longer than [upstream] connect/read/write_timeout."""


class UpstreamPoolFull(UpstreamError):
    """Every upstream connection stayed busy for [upstream] pool_timeout: the gateway is overloaded."""


class RequestNotForwardable(UpstreamError):
    """The client library refused the request itself (a header it will not write): the client's fault."""


def fingerprint(text: str) -> str:
    """A short hash that tells identical errors apart in logs without quoting them."""
    return hashlib.sha256(text.encode("utf-8", "replace")).hexdigest()[:12]


def gateway_error(exc: UpstreamError) -> GatewayError:
    """What the client is told (and the log says) about an upstream failure before its answer's head."""
    if isinstance(exc, UpstreamPoolFull):
        log.warning("upstream connection pool exhausted (upstream.max_connections)")
        return ServiceUnavailable("Too many requests are waiting for the application.")
    if isinstance(exc, UpstreamTimeout):
        log.warning("upstream too slow: %s", str(exc) or type(exc).__name__)
        return GatewayTimeout()
    if isinstance(exc, RequestNotForwardable):
        return BadRequest("The request cannot be forwarded (malformed header).")
    # The error's text can quote the upstream's raw bytes or the target with its query string: only
    # its kind and a short fingerprint of the text are logged.
    cause = exc.__cause__
    log.warning("upstream error: %s (detail %s)", type(cause or exc).__name__, fingerprint(str(exc)))
    return BadGateway()
