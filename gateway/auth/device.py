"""Device cookies (OWASP's defence against lock-out): proof that this browser signed in as a user.

After a successful sign-in the browser gets a signed, HttpOnly cookie naming the user and a random
device id. Sign-in attempts that carry a valid one for the name typed are throttled on that device
(and under an account-wide ceiling), so an attacker hammering the account from elsewhere cannot lock
its owner out. The cookie also carries a fingerprint of the password hash it was earned with: a
password change (or deleting and re-adding the user) makes every earlier device cookie worthless.
"""

from __future__ import annotations

import hashlib
import secrets

from itsdangerous import BadData, URLSafeTimedSerializer

SALT = "gateway device v1"
LIFETIME = 90 * 24 * 3600


class DeviceCookie:
    def __init__(self, secret_key: str, name: str) -> None:
        self.name = name
        self._serializer = URLSafeTimedSerializer(secret_key, SALT)

    def issue(self, user_name: str, password_hash: str) -> str:
        return str(self._serializer.dumps(
            {"u": user_name.lower(), "d": secrets.token_urlsafe(16), "p": _fingerprint(password_hash)}
        ))

    def device_for(self, token: str | None, user_name: str, password_hash: str | None) -> str | None:
        """The device id when ``token`` is a valid device cookie for ``user_name`` and its current
        password, else None (``password_hash`` None: no such user, so no device can be trusted)."""
        if password_hash is None:
            return None
        if not token or len(token) > 512:
            return None
        try:
            data = self._serializer.loads(token, max_age=LIFETIME)
        except (BadData, UnicodeError, ValueError, TypeError):
            return None
        if not isinstance(data, dict) or data.get("u") != user_name.lower() or not isinstance(data.get("d"), str):
            return None
        if data.get("p") != _fingerprint(password_hash):
            return None
        return str(data["d"])


def _fingerprint(password_hash: str) -> str:
    # Not the hash itself: the cookie is signed, not encrypted, and readable by its holder.
    return hashlib.sha256(b"device\0" + password_hash.encode()).hexdigest()[:16]
