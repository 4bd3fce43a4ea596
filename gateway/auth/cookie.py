"""The session cookie's value: an itsdangerous-signed reference to a server-side session.

Quart-Auth writes the cookie in the gateway's own pages (web/user.py); the admission path
(auth/identify.py), which runs below Quart, reads it with this same codec, so both agree on what a
valid cookie is. The codec is Quart-Auth's own format (its serializer_class: itsdangerous's
URLSafeTimedSerializer over HMAC-SHA512), built here from itsdangerous directly so that reading a
cookie (and every CLI command) does not import Quart; tests/unit/test_cookie_csrf.py holds the two
to the same bytes.
"""

from __future__ import annotations

import hashlib
import time

from itsdangerous import BadData, URLSafeTimedSerializer

SALT = "gateway session v1"
# Verifying the signature (HMAC-SHA512, base64, timestamp) on every request is costly (README,
# "Performance"); a token that verified is remembered for a minute. Only tokens that verified are kept, so forged
# ones cannot fill the memory; the server-side session row still decides on every request.
VERIFIED_TTL = 60.0
VERIFIED_MAX = 20_000


class SessionCookie:
    def __init__(self, secret_key: str, name: str, max_age: int) -> None:
        self.name = name
        self.max_age = max_age
        self._serializer = URLSafeTimedSerializer(secret_key, SALT, signer_kwargs={"digest_method": hashlib.sha512})
        self._verified: dict[str, tuple[str, float]] = {}  # token -> (session id, monotonic deadline)

    def dump(self, session_id: str) -> str:
        return str(self._serializer.dumps(session_id))

    def load(self, token: str) -> str | None:
        """The session id inside ``token``, or None for anything forged, expired or malformed."""
        if not token or len(token) > 512:
            return None
        now = time.monotonic()
        known = self._verified.get(token)
        if known is not None and now < known[1]:
            return known[0]
        try:
            value = self._serializer.loads(token, max_age=self.max_age)
        except (BadData, UnicodeError, ValueError, TypeError):
            return None
        if not isinstance(value, str):
            return None
        if len(self._verified) >= VERIFIED_MAX:
            self._verified.clear()
        self._verified[token] = (value, now + VERIFIED_TTL)
        return value


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
