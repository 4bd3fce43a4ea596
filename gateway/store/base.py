"""What the gateway needs from a store, as Protocols each backend can implement alone.

Users (with the audit trail) and sessions (with the throttle counters) are separate Protocols, so
a session store (SQLite today, later Redis) and a user store (SQLite today, later PostgreSQL) can be
different backends. A session record holds its user's id, never a copy of the user: whether a
session is alive depends on the user's state now (roles, disabled, password change time), which
comes from the user store (through the session cache, store/cache.py).

Records are plain frozen data. Session ids never reach the store: it only sees their SHA-256,
so a copy of the database cannot be replayed as cookies. Every backend translates its own
exceptions at its edge: callers only ever see ``StoreError`` (and its subclasses).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

THROTTLE_WINDOW = 3600.0  # a throttle counter is forgotten after this long without failures


class StoreError(Exception):
    """The store refused a change (duplicate or unknown user) or is unreachable."""


class StoreUnavailable(StoreError):
    """The store could not be read or written now (another process held its lock too long, the
    file is gone, the server is down): a request that needs it is answered 503, never guessed."""


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
    password_changed_at: float = 0.0  # sessions signed in before it are dead (0: never changed)


@dataclass(frozen=True, slots=True)
class SessionRecord:
    """A session as the session store keeps it: whose it is (a user id), never the user's state."""

    id_hash: str
    user_id: int
    created_at: float
    auth_time: float  # when the password was last entered for this session
    last_seen: float
    client: str
    user_agent: str
    persistent: bool = False  # "keep me signed in": the cookie outlives the browser
    binding: str = ""  # hash of what the session is bound to ([session] bind), "" when unbound
    mfa: str = ""  # how the second factor was passed (one of SESSION_MFA), "" when it was not


# What a session's ``mfa`` may hold; anything else read back from a store is damage (fails closed).
SESSION_MFA = ("", "totp", "passkey", "recovery")


# --- factors


@dataclass(frozen=True, slots=True)
class Factor:
    """A second factor of a user: an authenticator app ("totp") or, later, a passkey ("passkey");
    a user may have several of each, told apart by name."""

    id: int
    user_id: int
    kind: str  # "totp" | "passkey"
    name: str
    secret: str  # opaque to the store: the caller seals a TOTP key before it is stored
    created_at: float
    last_used: float = 0.0  # 0: never used


# --- tokens


@dataclass(frozen=True, slots=True)
class TokenRecord:
    """A personal access token as the user store keeps it: only its keyed digest, never the token."""

    digest: str  # HMAC-SHA256 hex (gateway/auth/tokens.py); the short id is its first 12 characters
    user_id: int
    name: str
    roles: tuple[str, ...]  # sorted; the principal gets these intersected with the user's current roles
    created_at: float
    expires_at: float
    last_used: float = 0.0  # 0: never used
    last_client: str = ""


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


@dataclass(frozen=True, slots=True)
class BackOff:
    """One throttle counter's rule, as data: every store evaluates it the same way (SQL stores in the
    transaction that reserves the attempt; a Redis store would in its script)."""

    free: int  # failures allowed before any wait
    base: float  # the first wait, in seconds; doubled for each further failure
    cap: float  # the longest wait

    def wait(self, state: ThrottleState | None, now: float, window: float = THROTTLE_WINDOW) -> float:
        """Seconds to wait before the next attempt may be made (0: go ahead)."""
        if state is None or now - state.last_failure > window or state.failures < self.free:
            return 0.0
        delay = min(self.cap, self.base * float(2 ** min(state.failures - self.free, 30)))
        return max(0.0, state.last_failure + delay - now)


def wait_needed(rules: Mapping[str, BackOff], states: Mapping[str, ThrottleState], now: float,
                window: float = THROTTLE_WINDOW) -> float:
    """The longest wait any counter's rule asks for (0: the attempt may go ahead)."""
    return max((rule.wait(states.get(key), now, window) for key, rule in rules.items()), default=0.0)


class Lifecycle(Protocol):
    async def open(self) -> None: ...
    async def close(self) -> None: ...
    async def ping(self) -> bool: ...


class UserStore(Protocol):
    async def add_user(self, name: str, password_hash: str, roles: tuple[str, ...], now: float) -> User: ...
    async def get_user(self, name: str) -> User | None: ...
    async def get_user_by_id(self, user_id: int) -> User | None: ...
    async def list_users(self) -> list[User]: ...
    # ``changed_at``: a password change (sessions signed in before it end); None: the same password
    # re-hashed (stronger parameters), which ends nothing.
    async def set_password_hash(self, name: str, password_hash: str, *, changed_at: float | None = None) -> None: ...
    async def set_roles(self, name: str, roles: tuple[str, ...]) -> None: ...
    async def set_disabled(self, name: str, disabled: bool) -> None: ...
    # Only the user: the caller tells the session store (Accounts.delete), no cascade is assumed.
    async def delete_user(self, name: str) -> None: ...
    # `gateway store copy`: users exactly as given (ids, hashes, times), in one transaction; later
    # add_user ids continue after the highest. DuplicateUser if any name or id is taken.
    async def import_users(self, users: list[User]) -> None: ...


class FactorStore(Protocol):
    """Second factors and recovery codes, kept by the user backend beside the users.

    ``use_totp_step`` is the single-use rule: a factor remembers the last TOTP step it accepted and
    accepts only a later one, atomically, so a code used on one worker or replica is refused on
    every other (and so is an older code still inside the skew window). Recovery codes are stored
    as digests only (auth/recovery.py); using one deletes it in the same step.
    """

    async def add_factor(self, user_id: int, kind: str, name: str, secret: str, now: float) -> Factor: ...
    async def list_factors(self, user_id: int) -> list[Factor]: ...
    async def delete_factor(self, user_id: int, factor_id: int) -> bool: ...
    # Every factor and every recovery code of the user (the lost-phone reset); how many factors went.
    async def delete_factors(self, user_id: int) -> int: ...
    async def use_totp_step(self, user_id: int, factor_id: int, step: int, now: float) -> bool: ...
    # Replaces the user's whole set: the old codes are void from the moment this returns.
    async def set_recovery_codes(self, user_id: int, digests: list[str], now: float) -> None: ...
    async def use_recovery_code(self, user_id: int, digest: str, now: float) -> bool: ...
    async def count_recovery_codes(self, user_id: int) -> int: ...


@runtime_checkable
class TokenStore(Protocol):
    """Personal access tokens, kept by the USER backend; every change publishes on the feed."""

    async def add_token(self, token: TokenRecord) -> None: ...
    async def get_token(self, digest: str) -> TokenRecord | None: ...
    async def list_tokens(self, user_id: int | None = None) -> list[TokenRecord]: ...
    async def revoke_token(self, digest_prefix: str) -> int: ...  # how many revoked (0 or 1; >1 refused)
    async def revoke_user_tokens(self, user_id: int) -> int: ...
    async def touch_tokens(self, used: Mapping[str, tuple[float, str]]) -> None: ...  # digest -> (time, client)


class SessionStore(Protocol):
    async def create_session(
        self, id_hash: str, user_id: int, now: float, client: str, user_agent: str,
        *, persistent: bool = False, binding: str = "", mfa: str = "",
    ) -> None: ...
    async def get_session(self, id_hash: str) -> SessionRecord | None: ...
    async def list_sessions(self, user_id: int | None = None) -> list[SessionRecord]: ...
    async def find_sessions(self, id_prefix: str) -> list[SessionRecord]: ...
    # Sessions created and last seen no earlier than given, per user id: one cheap query (metrics).
    async def count_sessions(self, *, created_after: float, seen_after: float) -> dict[int, int]: ...
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
    # The whole trail oldest first, a page at a time (`gateway store copy`).
    async def export_audit(self, *, offset: int, limit: int) -> list[AuditRecord]: ...


class ThrottleStore(Protocol):
    async def get_throttle(self, keys: list[str]) -> dict[str, ThrottleState]: ...
    async def record_failure(self, keys: list[str], now: float, window: float) -> None: ...
    # The check and the reservation in one atomic step: 0 and one failure counted on every key, or
    # the seconds to wait (``wait_needed`` over ``rules``) and nothing changed.
    async def reserve_attempt(self, rules: Mapping[str, BackOff], now: float, window: float) -> float: ...
    async def release_attempt(self, keys: list[str]) -> None: ...
    async def clear_throttle(self, keys: list[str]) -> None: ...


class ChangeFeed(Protocol):
    """How every process learns that users or sessions changed, so no cached row outlives a change.

    ``mark()`` is read on every request and must cost next to nothing (no I/O): it changes after
    every committed change to users or sessions made by any process that shares the stores (and
    never returns to an earlier value). None: the feed cannot vouch for anything now (its connection
    is stale), and nothing may be served from a cache. ``publish()`` announces a committed change;
    it returns once every process's next ``mark()`` shows it."""

    def mark(self) -> int | None: ...
    async def publish(self) -> None: ...
    async def open(self) -> None: ...
    async def close(self) -> None: ...


class UserBackend(UserStore, FactorStore, AuditStore, Lifecycle, Protocol):
    """What a ``[store] users`` URL opens: the users and the audit trail, and the feed its
    changes are published on (opened and closed with it)."""

    feed: ChangeFeed


class SessionBackend(SessionStore, ThrottleStore, Lifecycle, Protocol):
    """What a ``[store] sessions`` URL opens: the sessions and the sign-in throttle counters, and
    the feed its changes are published on (opened and closed with it)."""

    feed: ChangeFeed


class Store(UserBackend, SessionBackend, Protocol):
    """A backend that holds everything (SQLite: one file for both URLs)."""
