"""The one throttled password check, used by every form that asks for a password.

The order is the security: the throttle is consulted before the password is looked at (a throttled
attempt learns nothing about it), exactly one argon2 verification runs whatever the account
(a dummy one for an unknown name), and only a verified password clears the counters.
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway.auth.device import DeviceCookie
from gateway.auth.passwords import Passwords
from gateway.auth.throttle import Throttle, attempt_for
from gateway.store.base import User

__all__ = ["PasswordCheck", "Verdict"]


@dataclass(frozen=True, slots=True)
class Verdict:
    """What a throttled check found. ``wait`` > 0: throttled, and the password was not looked at."""

    wait: float
    ok: bool
    needs_rehash: bool
    device: str | None  # the known device the browser proved (its cookie), if any
    keys: tuple[str, ...]  # the throttle counters this attempt was counted on (for the audit line)


class PasswordCheck:
    def __init__(self, throttle: Throttle, passwords: Passwords, devices: DeviceCookie) -> None:
        self._throttle = throttle
        self._passwords = passwords
        self._devices = devices

    async def check(self, account: str, user: User | None, password: str, *, client: str,
                    device_cookie: str | None) -> Verdict:
        """Whether ``password`` is ``user``'s (None: no such user, always refused). ``account`` is
        the name the attempt is counted against, as typed. A disabled user is refused like a wrong
        password, after the same verification."""
        stored = user.password_hash if user is not None else None
        device = self._devices.device_for(device_cookie, account, stored)
        attempt = attempt_for(account, client, device)
        keys = tuple(attempt.keys)
        wait = await self._throttle.reserve(attempt)
        if wait > 0:
            return Verdict(wait, ok=False, needs_rehash=False, device=device, keys=keys)
        result = await self._passwords.verify(stored, password)
        ok = user is not None and not user.disabled and result.ok
        if ok:
            await self._throttle.succeeded(attempt)
        return Verdict(0.0, ok=ok, needs_rehash=ok and result.needs_rehash, device=device, keys=keys)
