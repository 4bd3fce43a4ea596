"""User account rules and changes, shared by the CLI and the account page.

Every change that takes rights away also ends the user's live sessions, in the same call.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from gateway.auth.passwords import Passwords, check_strength
from gateway.clock import Clock, system_clock
from gateway.store import Factor, Stores, UnknownUser, User

USER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}")
ROLE_NAME = re.compile(r"[A-Za-z0-9_.:-]{1,64}")


def check_user_name(name: str) -> str:
    if not USER_NAME.fullmatch(name):
        raise ValueError(
            f"invalid user name {name!r}: 1-64 characters, letters, digits and . _ @ -, starting with a letter or digit"
        )
    return name


def parse_roles(text: str) -> tuple[str, ...]:
    """"admin, staff" -> ("admin", "staff"); sorted and de-duplicated, as the header will carry them."""
    roles = {part.strip() for part in text.split(",") if part.strip()}
    for role in roles:
        if not ROLE_NAME.fullmatch(role):
            raise ValueError(f"invalid role {role!r}: letters, digits and _ . : - only")
    return tuple(sorted(roles))


@dataclass(frozen=True, slots=True)
class PasswordChange:
    sessions_ended: int
    password_hash: str


class Accounts:
    def __init__(self, stores: Stores, passwords: Passwords, clock: Clock = system_clock) -> None:
        self._store = stores.users
        self._sessions = stores.sessions
        self._factors = stores.factors
        self._passwords = passwords
        self._clock = clock

    async def add(self, name: str, password: str, roles: tuple[str, ...]) -> User:
        check_user_name(name)
        check_strength(password, name)
        return await self._store.add_user(name, await self._passwords.hash(password), roles, self._clock())

    async def require(self, name: str) -> User:
        """The user named ``name``; UnknownUser (a refused change, exit 1) when there is none."""
        user = await self._store.get_user(name)
        if user is None:
            raise UnknownUser(f"no user named {name!r}")
        return user

    async def set_password(self, name: str, password: str, *, keep: str | None = None) -> PasswordChange:
        """The one password change (the CLI's and the account page's): every session of the user
        ends, but the one whose id hash is ``keep`` (the browser that asked, which re-keys its own)."""
        user = await self.require(name)
        check_strength(password, user.name)
        password_hash = await self._passwords.hash(password)
        await self._store.set_password_hash(user.name, password_hash, changed_at=self._clock())
        return PasswordChange(await self._sessions.delete_user_sessions(user.id, keep=keep), password_hash)

    async def set_roles(self, name: str, roles: tuple[str, ...]) -> None:
        await self._store.set_roles((await self.require(name)).name, roles)

    async def disable(self, name: str) -> int:
        user = await self.require(name)
        await self._store.set_disabled(user.name, True)
        return await self._sessions.delete_user_sessions(user.id)

    async def enable(self, name: str) -> None:
        await self._store.set_disabled((await self.require(name)).name, False)

    async def delete(self, name: str) -> int:
        """Delete the user, then tell the session store: its sessions end (they were dead already,
        their user gone). Returns how many ended."""
        user = await self.require(name)
        await self._store.delete_user(user.name)
        return await self._sessions.delete_user_sessions(user.id)

    # --- factors

    async def factors(self, name: str) -> tuple[User, list[Factor], int]:
        """NAME's second factors and how many unused recovery codes they have."""
        user = await self.require(name)
        return user, await self._factors.list_factors(user.id), await self._factors.count_recovery_codes(user.id)

    async def reset_factors(self, name: str) -> tuple[int, int]:
        """The lost-phone reset: every factor and recovery code of NAME goes, and so does every
        session (each may have passed a factor that is gone now). (factors removed, sessions ended)."""
        user = await self.require(name)
        removed = await self._factors.delete_factors(user.id)
        return removed, await self._sessions.delete_user_sessions(user.id)
