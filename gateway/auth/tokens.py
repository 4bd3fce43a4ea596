"""Personal access tokens for scripts and API clients: the format, its checksum, the stored digest.

A token is ``gw_`` + 43 base62 characters (32 random bytes, fixed width) + 6 base62 characters
(CRC32 of the random part, fixed width): 52 characters. The prefix lets secret scanners find a
leaked token; the checksum lets the gateway refuse a mistyped or truncated token without a store
lookup. The store only ever sees the keyed digest (HMAC-SHA256 under a key derived from the server's
secret key): a stolen database gives no usable token, and checking a token costs one HMAC, not an
argon2 run per request (the secret is 256 random bits, so a slow hash would add nothing).

Pure: no I/O, no store; the gate and the CLI use it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
from datetime import timedelta

__all__ = ["MAX_LIFETIME", "PREFIX", "TOKEN_LENGTH", "TokenDigester", "lifetime_problem", "new_token",
           "parse_token", "token_from_authorization"]

PREFIX = "gw_"
ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
SECRET_BYTES = 32
SECRET_WIDTH = 43  # 62**43 > 2**256: every 32-byte value fits in 43 base62 digits
CHECK_WIDTH = 6  # 62**6 > 2**32: every CRC32 fits in 6 base62 digits
TOKEN_LENGTH = len(PREFIX) + SECRET_WIDTH + CHECK_WIDTH
MAX_LIFETIME = timedelta(days=365)
_INDEX = {c: i for i, c in enumerate(ALPHABET)}


def _encode(value: int, width: int) -> str:
    digits = []
    for _ in range(width):
        value, rest = divmod(value, 62)
        digits.append(ALPHABET[rest])
    return "".join(reversed(digits))


def _check(body: str) -> str:
    return _encode(binascii.crc32(body.encode("ascii")), CHECK_WIDTH)


def new_token() -> str:
    """A fresh token, shown to its owner once and never stored."""
    body = _encode(int.from_bytes(secrets.token_bytes(SECRET_BYTES), "big"), SECRET_WIDTH)
    return PREFIX + body + _check(body)


def parse_token(text: str) -> str | None:
    """``text`` if it is a well-formed token with a good checksum, else None (no store lookup needed)."""
    if len(text) != TOKEN_LENGTH or not text.startswith(PREFIX):
        return None
    body, check = text[len(PREFIX):-CHECK_WIDTH], text[-CHECK_WIDTH:]
    if any(c not in _INDEX for c in body) or any(c not in _INDEX for c in check):
        return None
    # Constant time, so timing does not reveal how much of a guessed checksum was right.
    return text if hmac.compare_digest(_check(body).encode(), check.encode()) else None


def token_from_authorization(header: str | None) -> str | None:
    """The gateway token an ``Authorization`` header carries (Bearer, or the password of Basic with any
    user name), well-formed or not; None when the header carries something else, which then passes to
    the app as today. The caller checks the result with :func:`parse_token`."""
    if not header:
        return None
    scheme, _, value = header.strip().partition(" ")
    value = value.strip()
    if scheme.lower() == "bearer":
        return value if value.startswith(PREFIX) else None
    if scheme.lower() == "basic":
        try:
            decoded = base64.b64decode(value, validate=True).decode("utf-8")
        except (ValueError, UnicodeDecodeError):
            return None
        _, sep, password = decoded.partition(":")
        return password if sep and password.startswith(PREFIX) else None
    return None


def lifetime_problem(lifetime: timedelta | None) -> str | None:
    """Why a requested token lifetime is refused, or None: an expiry is required, at most one year."""
    if lifetime is None:
        return "an expiry is required (at most 365 days)"
    if lifetime <= timedelta(0):
        return "the expiry must be in the future"
    if lifetime > MAX_LIFETIME:
        return "the expiry is more than 365 days away"
    return None


class TokenDigester:
    """The keyed digest a token is stored and looked up under."""

    def __init__(self, secret_key: str) -> None:
        # A key of its own, so a token digest can never double as any other signature.
        self._key = hmac.new(secret_key.encode(), b"gateway token v1", hashlib.sha256).digest()

    def digest(self, token: str) -> str:
        return hmac.new(self._key, token.encode("utf-8", "replace"), hashlib.sha256).hexdigest()

    def matches(self, token: str, digest: str) -> bool:
        return hmac.compare_digest(self.digest(token).encode(), digest.encode("utf-8", "replace"))

    @staticmethod
    def short_id(digest: str) -> str:
        """The id ``gateway tokens list`` shows and ``revoke`` takes: never the token itself."""
        return digest[:12]
