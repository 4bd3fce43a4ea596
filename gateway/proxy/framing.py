"""How a request's body is framed when it goes upstream: decided here, from the client's head,
once, and never copied from it (pure).

The gateway re-frames every body it forwards: a body it read with a length goes on with that
length written by the gateway (``004`` becomes ``4``), a chunked one is chunked again, and a
request without a body goes on without one. The client's own ``Content-Length`` and
``Transfer-Encoding`` never travel: a length the gateway did not read itself is how an upstream
connection is made to wait for bytes that then come from someone else's request.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from gateway.errors import BadRequest, PayloadTooLarge
from gateway.http import declares_body

__all__ = ["CHUNKED", "NO_BODY", "Framing", "declares_body", "request_framing"]

# RFC 9110 9.3.1/9.3.2/9.3.8: content in a GET, HEAD or TRACE request has no defined meaning, and
# some servers read it as the next request. Refused (400), never forwarded and never dropped
# silently, so a client learns at once that it sends something nobody will read.
NO_BODY_METHODS = frozenset({"GET", "HEAD", "TRACE"})


@dataclass(frozen=True, slots=True)
class Framing:
    """``length``: the exact body size the client declared (0 included), or None when it declared
    none (no body) or sent a chunked body of unknown size."""

    has_body: bool
    length: int | None

    def header(self) -> tuple[bytes, bytes] | None:
        """The Content-Length to send upstream; None for no body, or chunked (the client library
        writes Transfer-Encoding itself)."""
        if self.length is None:
            return None
        return (b"content-length", str(self.length).encode())


NO_BODY = Framing(False, None)
CHUNKED = Framing(True, None)


def request_framing(method: str, headers: Sequence[tuple[bytes, bytes]], max_body_size: int = 0) -> Framing:
    """The body the client declared, checked: one length or chunked, never both, never for GET/HEAD.

    The HTTP parser has already refused the worst (malformed lengths, CL beside TE); this says
    what the gateway will forward and refuses what it will not.
    """
    lengths: list[bytes] = []
    codings: list[bytes] = []
    for name, value in headers:
        if name == b"content-length":
            lengths.append(value)
        elif name == b"transfer-encoding":
            codings.append(value)
    if not lengths and not codings:
        return NO_BODY
    if lengths and codings:
        raise BadRequest("Content-Length and Transfer-Encoding together.")
    if codings:
        tokens = [token.strip().lower() for value in codings for token in value.split(b",")]
        if tokens != [b"chunked"]:
            # The gateway forwards the body decoded from chunked only: another coding would reach the
            # app undeclared.
            raise BadRequest("Only Transfer-Encoding: chunked is accepted.")
        if method in NO_BODY_METHODS:
            raise BadRequest(f"A {method} request cannot carry a body.")
        return CHUNKED
    length = _one_length(lengths)
    if max_body_size and length > max_body_size:
        raise PayloadTooLarge()
    if length == 0:
        return Framing(False, 0)
    if method in NO_BODY_METHODS:
        raise BadRequest(f"A {method} request cannot carry a body.")
    return Framing(True, length)


def _one_length(values: list[bytes]) -> int:
    """The declared length: digits only, every copy the same number (RFC 9112 6.3)."""
    found: int | None = None
    for value in values:
        for part in value.split(b","):
            text = part.strip()
            if not text.isdigit() or len(text) > 18:
                raise BadRequest("Malformed Content-Length.")
            number = int(text)
            if found is not None and number != found:
                raise BadRequest("Conflicting Content-Length values.")
            found = number
    assert found is not None
    return found
