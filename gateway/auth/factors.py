"""Second factors over the store: enrolling an authenticator app, checking a code (TOTP or
recovery) at sign-in, replacing the recovery codes. The sign-in and account pages call this; the
throttle and the audit trail are theirs (the same as for passwords).

A TOTP key is kept in the factor's ``secret`` as ``b32:<base32>``: the prefix names the form, so a
key sealed under the server secret (AES-GCM, once `cryptography` is a dependency) can be told apart
and read beside the older form.
"""

from __future__ import annotations

from gateway.auth import recovery, totp
from gateway.clock import Clock, system_clock
from gateway.store import Factor, Stores, User

__all__ = ["PLAIN_PREFIX", "Factors", "secret_of"]

PLAIN_PREFIX = "b32:"


def secret_of(factor: Factor) -> bytes | None:
    """The TOTP key of a factor, or None if it is not a TOTP factor in a form this release reads."""
    if factor.kind != "totp" or not factor.secret.startswith(PLAIN_PREFIX):
        return None
    try:
        return totp.decode_secret(factor.secret[len(PLAIN_PREFIX):])
    except ValueError:
        return None


class Factors:
    def __init__(self, stores: Stores, server_secret: bytes, clock: Clock = system_clock) -> None:
        self._store = stores.factors
        self._server_secret = server_secret
        self._clock = clock

    async def has_factor(self, user: User) -> bool:
        return bool(await self._store.list_factors(user.id))

    async def enrol_totp(self, user: User, name: str, secret: bytes, code: str) -> Factor | None:
        """Store the authenticator app whose key is ``secret`` once the user shows a code from it
        (that code's step is then spent). None when the code does not match."""
        now = self._clock()
        step = totp.match(secret, code, now)
        if step is None:
            return None
        factor = await self._store.add_factor(user.id, "totp", name, PLAIN_PREFIX + totp.encode_secret(secret), now)
        await self._store.use_totp_step(user.id, factor.id, step, now)
        return factor

    async def verify(self, user: User, code: str) -> str | None:
        """The kind of second factor ``code`` passes for ("totp" or "recovery"), or None. A TOTP
        step and a recovery code are each accepted once, whichever worker or replica sees them."""
        now = self._clock()
        if totp.normalise_code(code) is not None:
            for factor in await self._store.list_factors(user.id):
                secret = secret_of(factor)
                step = None if secret is None else totp.match(secret, code, now)
                if step is not None and await self._store.use_totp_step(user.id, factor.id, step, now):
                    return "totp"
            return None
        digest = recovery.digest(self._server_secret, code)
        if digest is not None and await self._store.use_recovery_code(user.id, digest, now):
            return "recovery"
        return None

    async def new_recovery_codes(self, user: User) -> list[str]:
        """A fresh set, shown once: the old set is void from now on."""
        codes = recovery.new_codes()
        digests = [recovery.digest(self._server_secret, code) for code in codes]
        await self._store.set_recovery_codes(user.id, [d for d in digests if d is not None], self._clock())
        return codes
