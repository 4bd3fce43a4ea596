"""What the gateway needs from a store, as Protocols; SQLite implements them today.

Records are plain frozen data. Session ids never reach the store: it only sees their SHA-256,
so a copy of the database cannot be replayed as cookies.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol


class StoreError(Exception):
    """The store refused a change (duplicate or unknown user) or is unreachable."""


class StoreUnavailable(StoreError):
    """The store could not be read or written now (another process held its lock too long, the
    file is gone): a request that needs it is answered 503, never guessed."""


class DuplicateUser(StoreError):
    pass


class UnknownUser(StoreError):
    pass


@dataclass(frozen=True, slots=True)
class User:
    id: int
    name: str
    password_hash: str
    roles: tuple[str, ...]  # sorted
    disabled: bool
    created_at: float


@dataclass(frozen=True, slots=True)
class SessionRecord:
    """A live session row joined with the current state of its user."""

    id_hash: str
    user_id: int
    user_name: str
    roles: tuple[str, ...]
    user_disabled: bool
    created_at: float
    auth_time: float  # when the password was last entered for this session
    last_seen: float
    client: str
    user_agent: str
    persistent: bool = False  # "keep me signed in": the cookie outlives the browser
    binding: str = ""  # hash of what the session is bound to ([session] bind), "" when unbound


@dataclass(frozen=True, slots=True)
class AuditRecord:
    time: float
    event: str
    user: str | None
    client: str | None
    detail: str  # JSON object


@dataclass(frozen=True, slots=True)
class ThrottleState:
    failures: int
    last_failure: float


class UserStore(Protocol):
    async def add_user(self, name: str, password_hash: str, roles: tuple[str, ...], now: float) -> User: ...
    async def get_user(self, name: str) -> User | None: ...
    async def list_users(self) -> list[User]: ...
    async def set_password_hash(self, name: str, password_hash: str) -> None: ...
    async def set_roles(self, name: str, roles: tuple[str, ...]) -> None: ...
    async def set_disabled(self, name: str, disabled: bool) -> None: ...
    async def delete_user(self, name: str) -> None: ...


class SessionStore(Protocol):
    async def create_session(
        self, id_hash: str, user_id: int, now: float, client: str, user_agent: str,
        *, persistent: bool = False, binding: str = "",
    ) -> None: ...
    async def get_session(self, id_hash: str) -> SessionRecord | None: ...
    async def list_sessions(self, user_id: int | None = None) -> list[SessionRecord]: ...
    async def find_sessions(self, id_prefix: str) -> list[SessionRecord]: ...
    # Sessions of enabled users created and last seen no earlier than given: one cheap query (metrics).
    async def count_sessions(self, *, created_after: float, seen_after: float) -> int: ...
    async def touch_session(self, id_hash: str, now: float) -> None: ...
    # Idle-clock refreshes, many sessions in one write; last_seen never moves back.
    async def touch_sessions(self, seen: Mapping[str, float]) -> None: ...
    async def delete_session(self, id_hash: str) -> bool: ...
    async def delete_user_sessions(self, user_id: int, *, keep: str | None = None) -> int: ...
    async def delete_all_sessions(self) -> int: ...


class AuditStore(Protocol):
    async def add_audit(self, records: list[AuditRecord]) -> None: ...
    async def list_audit(
        self, *, user: str | None = None, since: float | None = None, limit: int = 1000
    ) -> list[AuditRecord]: ...


class ThrottleStore(Protocol):
    async def get_throttle(self, keys: list[str]) -> dict[str, ThrottleState]: ...
    async def record_failure(self, keys: list[str], now: float, window: float) -> None: ...
    async def reserve_attempt(
        self, keys: list[str], now: float, window: float, wait: Callable[[dict[str, ThrottleState]], float]
    ) -> float: ...
    async def release_attempt(self, keys: list[str]) -> None: ...
    async def clear_throttle(self, keys: list[str]) -> None: ...


class Store(UserStore, SessionStore, AuditStore, ThrottleStore, Protocol):
    async def open(self) -> None: ...
    async def close(self) -> None: ...
    async def ping(self) -> bool: ...
