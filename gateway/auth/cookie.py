"""The session cookie's value: an itsdangerous-signed reference to a server-side session.

Quart-Auth writes the cookie in the gateway's own pages; the proxy path, which runs below Quart,
reads it with this same codec, so both halves agree on what a valid cookie is.
"""

from __future__ import annotations

from itsdangerous import BadData
from quart_auth import QuartAuth

SALT = "gateway session v1"


class SessionCookie:
    def __init__(self, secret_key: str, name: str, max_age: int) -> None:
        self.name = name
        self.max_age = max_age
        self._serializer = QuartAuth.serializer_class(secret_key, SALT)

    def dump(self, session_id: str) -> str:
        return str(self._serializer.dumps(session_id))

    def load(self, token: str) -> str | None:
        """The session id inside ``token``, or None for anything forged, expired or malformed."""
        if not token or len(token) > 512:
            return None
        try:
            value = self._serializer.loads(token, max_age=self.max_age)
        except (BadData, UnicodeError, ValueError, TypeError):
            return None
        return value if isinstance(value, str) else None


def cookie_value(header: str | bytes | None, name: str) -> str | None:
    """The first value of cookie ``name`` in a Cookie header (the same one werkzeug would pick)."""
    if not header:
        return None
    if isinstance(header, bytes):
        header = header.decode("latin-1")
    for part in header.split(";"):
        key, sep, value = part.strip().partition("=")
        if sep and key == name:
            return value.strip().strip('"')
    return None
