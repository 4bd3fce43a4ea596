"""Sign-in throttling: exponential back-off per account, per client address and per known device.

Every attempt is first *reserved* as a failure, atomically with the check (the rules are data the
store evaluates in the same step as the reservation: one transaction, so parallel attempts and
several worker processes cannot all slip through before a failure is counted); a successful
sign-in then gives the reservation back. The check happens before the password is looked at, so a
throttled attempt gets the same answer whatever the password.

Lock-out resistance (OWASP "device cookies"): a browser that has signed in as a user before carries
a signed device cookie for that user; its attempts are counted on that device alone, so an attacker
hammering the account from elsewhere slows only themselves down.

With ACCOUNT's numbers an account admits at most 3 + 6 + 59 = 68 failures in any hour from unknown
browsers, whatever number of addresses an attacker uses; attempts from known devices count on the
same counter and stop at ACCOUNT_CEILING, so no account ever sees more than 100 failures an hour.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from gateway.store.base import THROTTLE_WINDOW, BackOff, ThrottleStore

__all__ = ["ACCOUNT", "ACCOUNT_CEILING", "CLIENT", "DEVICE", "WINDOW", "Attempt", "BackOff", "Throttle", "attempt_for"]

WINDOW = THROTTLE_WINDOW  # a counter is forgotten after an hour without failures


ACCOUNT = BackOff(free=3, base=1.0, cap=60.0)
CLIENT = BackOff(free=10, base=1.0, cap=60.0)
DEVICE = BackOff(free=3, base=1.0, cap=60.0)
# Known devices are not slowed by the account's back-off, but they count on the account's counter
# and stop at this ceiling: 100 failures on the account close it to everyone for the rest of the hour.
ACCOUNT_CEILING = BackOff(free=100, base=WINDOW, cap=WINDOW)


@dataclass(frozen=True, slots=True)
class Attempt:
    """The counters one sign-in attempt is charged to."""

    rules: Mapping[str, BackOff]

    @property
    def keys(self) -> list[str]:
        return list(self.rules)


def attempt_for(user_name: str, client: str, device: str | None) -> Attempt:
    account = f"account:{user_name.lower()}"
    if device is not None:
        return Attempt({f"device:{device}": DEVICE, account: ACCOUNT_CEILING})
    return Attempt({account: ACCOUNT, f"client:{client}": CLIENT})


class Throttle:
    def __init__(self, store: ThrottleStore, clock: Callable[[], float] = time.time) -> None:
        self._store = store
        self._clock = clock

    async def reserve(self, attempt: Attempt) -> float:
        """0 and one failure reserved on every counter; or the seconds to wait, and nothing changed."""
        now = self._clock()
        return await self._store.reserve_attempt(attempt.rules, now, WINDOW)

    async def succeeded(self, attempt: Attempt) -> None:
        # The password was right: the reservation was no failure after all.
        await self._store.clear_throttle([key for key in attempt.keys if not key.startswith("account:")])
        await self._store.release_attempt([key for key in attempt.keys if key.startswith("account:")])
