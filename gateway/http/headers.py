"""Reading a raw ASGI header list (pure): the one lookup every module uses.

Names are compared exactly: ASGI servers hand them over in lower case, and callers ask in lower case.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = [
    "METHOD_OVERRIDE", "REQUEST_ID", "HeaderList", "RawHeaders", "all_values", "declares_body", "first_value",
    "last_value", "method_overrides", "normalize",
]

RawHeaders = Sequence[tuple[bytes, bytes]]
HeaderList = list[tuple[bytes, bytes]]

REQUEST_ID = b"x-request-id"


def first_value(headers: RawHeaders, name: bytes) -> bytes | None:
    """The value of the first ``name`` line, or None."""
    for key, value in headers:
        if key == name:
            return value
    return None


def last_value(headers: RawHeaders, name: bytes) -> bytes | None:
    """The value of the last ``name`` line, or None: a trusted proxy's own line comes after any the
    client sent."""
    found: bytes | None = None
    for key, value in headers:
        if key == name:
            found = value
    return found


def all_values(headers: RawHeaders, name: bytes) -> list[bytes]:
    """Every ``name`` line's value, in order."""
    return [value for key, value in headers if key == name]


def declares_body(headers: RawHeaders) -> bool:
    """A Transfer-Encoding of any kind, or a Content-Length above zero (the parser checked its syntax)."""
    for name, value in headers:
        if name == b"transfer-encoding":
            return True
        if name == b"content-length" and value.strip(b" \t0"):
            return True
    return False


# Headers some frameworks honour to tunnel another method through POST or GET; the policy must
# allow the tunnelled method too, or a rule that allows only GET could be turned into a DELETE.
METHOD_OVERRIDE = frozenset({b"x-http-method-override", b"x-http-method", b"x-method-override"})


def normalize(name: bytes) -> bytes:
    """A header name as backends that read "_" as "-" see it (CGI, WSGI, PHP), in lower case."""
    return name.lower().replace(b"_", b"-")


def method_overrides(headers: RawHeaders) -> list[str]:
    """Methods a client asks the app to use instead of the real one (X-HTTP-Method-Override & co.)."""
    methods: list[str] = []
    for name, value in headers:
        if normalize(name) in METHOD_OVERRIDE:
            methods.extend(part.strip().upper() for part in value.decode("latin-1").split(",") if part.strip())
    return methods
