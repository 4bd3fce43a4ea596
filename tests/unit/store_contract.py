"""The store contract: one suite every store backend must pass, importable.

A test module runs it against its backends by importing the tests (``from tests.unit.store_contract
import *``) and defining the fixture ``stores`` (an open ``Stores``, session cache on or off) built
with the suite's ``clock`` fixture: the same ``FakeClock`` drives the session manager's wall time
and the session cache's TTL, so expiry and cache ageing are fast-forwarded, never slept through.
tests/unit/test_store_contract.py runs it against SQLite (one file, two files, cache on and off).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

import pytest

from gateway.auth.accounts import Accounts
from gateway.auth.passwords import Passwords
from gateway.auth.sessions import SessionManager, hash_session_id
from gateway.config import PasswordSettings, SessionSettings
from gateway.store import AuditRecord, BackOff, DuplicateUser, SignedIn, Stores, StoreUnavailable, UnknownUser

__all__ = [
    "FakeClock",
    "clock",
    "test_a_busy_store_never_ends_a_live_session_early",
    "test_a_change_is_seen_at_once_through_the_cache",
    "test_a_lookup_racing_a_write_cannot_cache_the_old_row",
    "test_a_password_change_ends_older_sessions",
    "test_audit_records",
    "test_cached_rows_expire_after_the_ttl",
    "test_completing_the_second_factor_rotates_the_session",
    "test_deleting_a_user_tells_the_session_side",
    "test_end_session",
    "test_factors",
    "test_idle_clock_is_written_at_most_once_a_minute",
    "test_listing_finding_and_bulk_revocation",
    "test_listings_show_only_live_sessions_and_purge_removes_dead_ones",
    "test_recovery_codes_are_single_use_and_replaced_as_a_set",
    "test_session_binding",
    "test_session_manager_timeouts",
    "test_sessions_follow_their_user",
    "test_sessions_remember_the_second_factor",
    "test_the_idle_clock_refresh_never_changes_validity",
    "test_the_live_count_matches_the_listing",
    "test_throttle_counters_decay_after_the_window",
    "test_throttle_rules_are_data_evaluated_with_the_reservation",
    "test_totp_steps_are_single_use_even_when_raced",
    "test_unbound_sessions_follow_the_cookie",
    "test_user_agents_are_stored_without_control_characters",
    "test_users",
]

CACHE_TTL = 1.0  # what a backend fixture with the cache on should use


class FakeClock:
    """Wall time for the session manager and monotonic time for the cache, moved by hand."""

    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


FAST = PasswordSettings(time_cost=1, memory_cost=8, parallelism=1)


async def test_users(stores: Stores) -> None:
    users = stores.users
    alice = await users.add_user("alice", "hash1", ("staff", "admin"), 1.0)
    assert alice.roles == ("admin", "staff")
    with pytest.raises(DuplicateUser):
        await users.add_user("ALICE", "hash2", (), 2.0)  # names are unique regardless of case
    found = await users.get_user("Alice")
    assert found is not None and found.name == "alice" and found.password_hash == "hash1"
    assert await users.get_user_by_id(alice.id) == found
    await users.set_roles("alice", ("ops",))
    await users.set_password_hash("alice", "hash3")
    await users.set_disabled("alice", True)
    found = await users.get_user("alice")
    assert found is not None and found.roles == ("ops",) and found.password_hash == "hash3" and found.disabled
    assert found.password_changed_at == 0.0  # a re-hash is no password change
    await users.set_password_hash("alice", "hash4", changed_at=5.0)
    found = await users.get_user("alice")
    assert found is not None and found.password_changed_at == 5.0
    for change in (users.set_roles("ghost", ()), users.set_disabled("ghost", True), users.delete_user("ghost"),
                   users.set_password_hash("ghost", "x")):
        with pytest.raises(UnknownUser):
            await change
    bob = await users.add_user("bob", "h", (), 3.0)
    assert [u.name for u in await users.list_users()] == ["alice", "bob"]
    await users.delete_user("alice")
    assert await users.get_user("alice") is None and await users.get_user_by_id(alice.id) is None
    carol = await users.add_user("carol", "h", (), 4.0)
    assert carol.id not in (alice.id, bob.id)  # ids are never reused: a stray session names nobody
    assert await stores.ping()


async def test_sessions_follow_their_user(stores: Stores) -> None:
    user = await stores.users.add_user("alice", "h", ("admin",), 1.0)
    await stores.sessions.create_session("h1", user.id, 10.0, "127.0.0.1", "agent")
    found = await stores.cache.lookup("h1")
    assert found is not None and found.user.name == "alice" and found.user.roles == ("admin",)
    assert found.session.user_id == user.id and found.session.client == "127.0.0.1"
    await stores.users.set_roles("alice", ("staff",))
    found = await stores.cache.lookup("h1")
    assert found is not None and found.user.roles == ("staff",)  # roles are read live, not copied
    await stores.sessions.touch_session("h1", 20.0)
    record = await stores.sessions.get_session("h1")
    assert record is not None and record.last_seen == 20.0
    await stores.sessions.create_session("h2", user.id, 10.0, "", "")
    assert await stores.sessions.delete_user_sessions(user.id) == 2
    assert await stores.cache.lookup("h1") is None


async def test_deleting_a_user_tells_the_session_side(stores: Stores) -> None:
    accounts = Accounts(stores, Passwords(FAST))
    user = await stores.users.add_user("alice", "h", (), 1.0)
    await stores.sessions.create_session("h3", user.id, 10.0, "", "")
    await stores.sessions.create_session("h4", user.id, 10.0, "", "")
    assert await accounts.delete("alice") == 2
    assert await stores.cache.lookup("h3") is None and await stores.sessions.get_session("h4") is None
    # A session the session side never heard about (a store that missed the news) still names nobody.
    other = await stores.users.add_user("bob", "h", (), 1.0)
    await stores.sessions.create_session("h5", other.id, 10.0, "", "")
    await stores.users.delete_user("bob")
    assert await stores.cache.lookup("h5") is None


async def test_session_manager_timeouts(stores: Stores, clock: FakeClock) -> None:
    settings = SessionSettings(secure_cookie=True, idle_timeout=1800, absolute_timeout=3 * 3600)
    sessions = SessionManager(stores, settings, clock=clock)
    user = await stores.users.add_user("alice", "h", ("admin",), clock.now)

    sid = await sessions.start(user, "127.0.0.1", "")
    assert len(sid) >= 43  # 256 bits, url-safe
    assert await stores.sessions.get_session(sid) is None  # only the hash is stored
    active = await sessions.resolve(sid)
    assert active is not None and active.principal.user == "alice"

    clock.now += 1700  # within idle timeout; resolve refreshes last_seen
    assert await sessions.resolve(sid) is not None
    clock.now += 1700
    assert await sessions.resolve(sid) is not None
    clock.now += 1801  # idle too long
    assert await sessions.resolve(sid) is None
    assert await stores.sessions.get_session(hash_session_id(sid)) is None

    sid = await sessions.start(user, "", "")
    for _ in range(12):  # active all along, but the absolute lifetime still ends it
        clock.now += 1000
        result = await sessions.resolve(sid)
    assert result is None

    sid = await sessions.start(user, "", "")
    await stores.users.set_disabled("alice", True)
    assert await sessions.resolve(sid) is None

    for bad in (None, "", "x" * 65, "bad chars!", sid + "x"):
        assert await sessions.resolve(bad) is None


async def test_a_password_change_ends_older_sessions(stores: Stores, clock: FakeClock) -> None:
    """Even a session the session side did not delete: the user's password change time decides."""
    sessions = SessionManager(stores, SessionSettings(True, 1800, 3600), clock=clock)
    user = await stores.users.add_user("pat", "h", (), clock.now)
    old = await sessions.start(user, "", "")
    clock.now += 10
    await stores.users.set_password_hash("pat", "h2", changed_at=clock.now)
    assert await sessions.resolve(old) is None
    new = await sessions.start(user, "", "")
    assert await sessions.resolve(new) is not None


@pytest.mark.parametrize(("bind", "same", "other"), [
    ("user_agent", {"client": "10.0.0.9", "user_agent": "Firefox"}, {"client": "10.0.0.1", "user_agent": "curl"}),
    ("client", {"client": "10.0.0.1", "user_agent": "curl"}, {"client": "10.0.0.9", "user_agent": "Firefox"}),
])
async def test_session_binding(stores: Stores, clock: FakeClock, bind: str, same: dict[str, str],
                               other: dict[str, str]) -> None:
    settings = SessionSettings(secure_cookie=True, idle_timeout=1800, absolute_timeout=3600, bind=bind)
    sessions = SessionManager(stores, settings, clock=clock)
    user = await stores.users.add_user("carol", "h", (), 0.0)
    sid = await sessions.start(user, "10.0.0.1", "Firefox")
    assert await sessions.resolve(sid, **same) is not None  # what is not bound may change
    assert await sessions.resolve(sid, **other) is None  # a copied cookie used elsewhere: signed out
    assert await sessions.resolve(sid, client="10.0.0.1", user_agent="Firefox") is None  # and the session is gone


async def test_unbound_sessions_follow_the_cookie(stores: Stores, clock: FakeClock) -> None:
    sessions = SessionManager(stores, SessionSettings(True, 1800, 3600, bind="none"), clock=clock)
    user = await stores.users.add_user("dan", "h", (), 0.0)
    sid = await sessions.start(user, "10.0.0.1", "Firefox")
    assert await sessions.resolve(sid, client="10.9.9.9", user_agent="other") is not None


async def test_end_session(stores: Stores, clock: FakeClock) -> None:
    sessions = SessionManager(stores, SessionSettings(True, 1800, 3600), clock=clock)
    user = await stores.users.add_user("bob", "h", (), 0.0)
    sid = await sessions.start(user, "", "")
    assert await sessions.resolve(sid) is not None
    await sessions.end(sid)
    assert await sessions.resolve(sid) is None


async def test_listing_finding_and_bulk_revocation(stores: Stores) -> None:
    alice = await stores.users.add_user("alice", "h", (), 0.0)
    bob = await stores.users.add_user("bob", "h", (), 0.0)
    sessions = stores.sessions
    await sessions.create_session("aa11", alice.id, 1.0, "10.0.0.1", "ua-1", persistent=True, binding="b1")
    await sessions.create_session("aa22", alice.id, 2.0, "10.0.0.2", "ua-2")
    await sessions.create_session("bb33", bob.id, 3.0, "10.0.0.3", "ua-3")
    assert [s.id_hash for s in await sessions.list_sessions(alice.id)] == ["aa11", "aa22"]
    assert len(await sessions.list_sessions()) == 3
    first = await sessions.get_session("aa11")
    assert first is not None and first.persistent and first.binding == "b1"
    assert [s.id_hash for s in await sessions.find_sessions("aa")] == ["aa11", "aa22"]
    assert [s.id_hash for s in await sessions.find_sessions("bb3")] == ["bb33"]
    assert await sessions.find_sessions("") == [] and await sessions.find_sessions("a%") == []
    assert await sessions.delete_user_sessions(alice.id, keep="aa22") == 1
    assert [s.id_hash for s in await sessions.list_sessions(alice.id)] == ["aa22"]
    assert await sessions.delete_session("aa22") and not await sessions.delete_session("aa22")
    assert await sessions.delete_all_sessions() == 1


async def test_audit_records(stores: Stores) -> None:
    await stores.audit.add_audit([AuditRecord(float(t), f"event{t}", "alice" if t % 2 else "bob", "1.2.3.4", "{}")
                                  for t in range(10)])
    audit = stores.audit
    assert [r.event for r in await audit.list_audit(user="ALICE")] == ["event1", "event3", "event5", "event7", "event9"]
    assert [r.event for r in await audit.list_audit(since=8.0)] == ["event8", "event9"]
    assert [r.event for r in await audit.list_audit(limit=3)] == ["event7", "event8", "event9"]


async def test_throttle_counters_decay_after_the_window(stores: Stores) -> None:
    throttle = stores.throttle
    await throttle.record_failure(["acct:a", "ip:x"], 100.0, 3600.0)
    await throttle.record_failure(["acct:a"], 101.0, 3600.0)
    state = await throttle.get_throttle(["acct:a", "ip:x", "ip:none"])
    assert state["acct:a"].failures == 2 and state["acct:a"].last_failure == 101.0
    assert state["ip:x"].failures == 1 and "ip:none" not in state
    await throttle.record_failure(["acct:a"], 101.0 + 3601.0, 3600.0)
    assert (await throttle.get_throttle(["acct:a"]))["acct:a"].failures == 1  # a quiet hour forgets
    await throttle.clear_throttle(["acct:a"])
    assert await throttle.get_throttle(["acct:a"]) == {}


async def test_throttle_rules_are_data_evaluated_with_the_reservation(stores: Stores) -> None:
    rules = {"acct:a": BackOff(free=2, base=10.0, cap=60.0), "ip:x": BackOff(free=5, base=1.0, cap=60.0)}
    throttle = stores.throttle
    assert await throttle.reserve_attempt(rules, 100.0, 3600.0) == 0.0
    assert await throttle.reserve_attempt(rules, 101.0, 3600.0) == 0.0
    assert await throttle.reserve_attempt(rules, 102.0, 3600.0) == pytest.approx(9.0)  # 101 + 10 - 102
    state = await throttle.get_throttle(list(rules))
    assert state["acct:a"].failures == 2 and state["ip:x"].failures == 2  # a refused attempt counts nothing
    assert await throttle.reserve_attempt(rules, 111.0, 3600.0) == 0.0
    await throttle.release_attempt(["acct:a"])
    assert (await throttle.get_throttle(["acct:a"]))["acct:a"].failures == 2
    # Parallel attempts cannot all slip through before a failure is counted.
    waits = await asyncio.gather(*(throttle.reserve_attempt({"acct:b": BackOff(3, 5.0, 60.0)}, 200.0, 3600.0)
                                   for _ in range(10)))
    assert sum(1 for wait in waits if wait == 0) == 3


async def test_idle_clock_is_written_at_most_once_a_minute(stores: Stores, clock: FakeClock) -> None:
    sessions = SessionManager(stores, SessionSettings(True, 1800, 3600), clock=clock)
    user = await stores.users.add_user("eve", "h", (), 0.0)
    sid = await sessions.start(user, "", "")
    started = clock.now
    for _ in range(59):  # a request a second for 59 seconds: no write
        clock.now += 1
        assert await sessions.resolve(sid) is not None
    await sessions.idle_clock.flush()
    record = await stores.sessions.get_session(hash_session_id(sid))
    assert record is not None and record.last_seen == started
    clock.now += 1
    await sessions.resolve(sid)
    assert sessions.idle_clock.pending == 1  # noted by the request, written behind it
    for _ in range(30):  # many requests, one refresh
        await sessions.resolve(sid)
    await sessions.idle_clock.flush()
    record = await stores.sessions.get_session(hash_session_id(sid))
    assert record is not None and record.last_seen == clock.now


class BusyTouches:
    """The session store as another worker holding its write lock makes it look to idle-clock
    refreshes: they fail (``busy``) or hang until let through (``gate``). Everything else passes."""

    def __init__(self, store: object) -> None:
        self.store = store
        self.busy = False
        self.gate: asyncio.Event | None = None
        self.writes = 0

    def __getattr__(self, name: str) -> object:
        return getattr(self.store, name)

    async def _wait_or_fail(self) -> None:
        if self.busy:
            raise StoreUnavailable("the store is busy: database is locked")
        if self.gate is not None:
            await self.gate.wait()

    async def touch_session(self, id_hash: str, now: float) -> None:
        await self.touch_sessions({id_hash: now})

    async def touch_sessions(self, seen: Mapping[str, float]) -> None:
        await self._wait_or_fail()
        self.writes += 1
        await self.store.touch_sessions(seen)  # type: ignore[attr-defined]


def _busy(stores: Stores) -> BusyTouches:
    busy = BusyTouches(stores.sessions)
    stores.sessions = busy  # type: ignore[assignment]
    return busy


async def test_the_idle_clock_refresh_never_changes_validity(stores: Stores, clock: FakeClock) -> None:
    """Issue 11: requests failed (503, or 401 for a valid session) when the refresh due a minute
    after sign-in met another worker's lock. The refresh may be late or fail; the request and the
    session's validity may not notice."""
    real = stores.sessions
    busy = _busy(stores)
    # A 240 s idle timeout: the idle clock is refreshed every 60 s.
    sessions = SessionManager(stores, SessionSettings(True, idle_timeout=240, absolute_timeout=3600), clock=clock)
    user = await stores.users.add_user("ida", "h", (), 0.0)
    sid = await sessions.start(user, "", "")
    signed_in = clock.now

    busy.busy = True
    clock.now += 60  # the refresh is due, and the store refuses it
    assert await sessions.resolve(sid) is not None
    with pytest.raises(StoreUnavailable):
        await sessions.idle_clock.flush()  # the write failed: kept for the next attempt
    refreshed = clock.now
    clock.now = signed_in + 239 + 60  # idle by the stored row, alive by the refresh that was made
    assert await sessions.resolve(sid) is not None

    busy.busy, busy.gate = False, asyncio.Event()
    writing = asyncio.ensure_future(sessions.idle_clock.flush())  # the write is under way, not done
    await asyncio.sleep(0)
    for _ in range(5):
        assert await sessions.resolve(sid) is not None
    busy.gate.set()
    await writing
    assert busy.writes == 1
    record = await real.get_session(hash_session_id(sid))
    assert record is not None and record.last_seen == clock.now > refreshed  # the newest refresh, once
    clock.now += 239
    assert await sessions.resolve(sid) is not None
    clock.now += 241  # and idleness still ends it
    assert await sessions.resolve(sid) is None


async def test_a_busy_store_never_ends_a_live_session_early(stores: Stores, clock: FakeClock) -> None:
    """Deleting a dead session is best effort; a live one is never deleted because a write failed."""
    real = stores.sessions
    busy = _busy(stores)
    sessions = SessionManager(stores, SessionSettings(True, idle_timeout=240, absolute_timeout=3600), clock=clock)
    user = await stores.users.add_user("ivo", "h", (), 0.0)
    sid = await sessions.start(user, "", "")
    busy.busy = True
    for _ in range(20):  # refreshes due all along, none stored
        clock.now += 100
        assert await sessions.resolve(sid) is not None
    assert await real.get_session(hash_session_id(sid)) is not None


async def test_listings_show_only_live_sessions_and_purge_removes_dead_ones(stores: Stores, clock: FakeClock) -> None:
    sessions = SessionManager(stores, SessionSettings(True, idle_timeout=600, absolute_timeout=3600), clock=clock)
    user = await stores.users.add_user("flo", "h", (), 0.0)
    gone = await stores.users.add_user("gone", "h", (), 0.0)
    old = await sessions.start(user, "", "")
    await sessions.start(gone, "", "")
    await stores.users.delete_user("gone")  # the session side not told: its session is dead all the same
    clock.now += 700  # past the idle limit, never used again
    fresh = await sessions.start(user, "", "")
    assert [r.session.id_hash for r in await sessions.live_sessions(user.id)] == [hash_session_id(fresh)]
    assert len(await stores.sessions.list_sessions(user.id)) == 2
    assert await sessions.purge_expired() == 2
    assert [r.id_hash for r in await stores.sessions.list_sessions()] == [hash_session_id(fresh)]
    assert old != fresh


async def test_the_live_count_matches_the_listing(stores: Stores, clock: FakeClock) -> None:
    sessions = SessionManager(stores, SessionSettings(True, idle_timeout=600, absolute_timeout=3600), clock=clock)
    assert await sessions.count_live() == 0
    flo = await stores.users.add_user("flo", "h", (), 0.0)
    ivo = await stores.users.add_user("ivo", "h", (), 0.0)
    await sessions.start(flo, "", "")  # idle too long below
    clock.now += 700
    await sessions.start(flo, "", "")
    await sessions.start(ivo, "", "")
    assert await sessions.count_live() == 2 == len(await sessions.live_sessions())
    await stores.users.set_disabled("ivo", True)
    assert await sessions.count_live() == 1 == len(await sessions.live_sessions())
    clock.now += 3000  # idle too long, all of them
    assert await sessions.count_live() == 0


async def test_user_agents_are_stored_without_control_characters(stores: Stores, clock: FakeClock) -> None:
    sessions = SessionManager(stores, SessionSettings(True, 1800, 3600, bind="none"), clock=clock)
    user = await stores.users.add_user("gus", "h", (), 0.0)
    await sessions.start(user, "", "Moz\x1b]0;PWNED\x07\u202e<b>")
    (record,) = await stores.sessions.list_sessions(user.id)
    assert record.user_agent.isprintable() and "PWNED" in record.user_agent and "\x1b" not in record.user_agent


# The changes that must reach every reader of a session at once, made to alice's session "s1".
CHANGES = ["revoke", "revoke_all", "disable", "roles", "delete", "password"]


async def make_change(stores: Stores, change: str) -> None:
    if change == "revoke":
        await stores.sessions.delete_session("s1")
    elif change == "revoke_all":
        await stores.sessions.delete_all_sessions()
    elif change == "disable":
        await stores.users.set_disabled("alice", True)
    elif change == "roles":
        await stores.users.set_roles("alice", ("staff",))
    elif change == "password":
        await stores.users.set_password_hash("alice", "h2", changed_at=20.0)
    else:
        await stores.users.delete_user("alice")


def check_changed(found: SignedIn | None, change: str) -> None:
    """What a lookup of "s1" must show right after ``make_change``."""
    if change == "disable":
        assert found is not None and found.user.disabled
    elif change == "roles":
        assert found is not None and found.user.roles == ("staff",)
    elif change == "password":
        assert found is not None and found.user.password_changed_at == 20.0
    else:
        assert found is None


@pytest.mark.parametrize("change", CHANGES)
async def test_a_change_is_seen_at_once_through_the_cache(stores: Stores, change: str) -> None:
    """With the cache on, a change made through the stores is in force at the very next lookup (the
    change feed), long before the cache's TTL."""
    user = await stores.users.add_user("alice", "h", ("admin",), 1.0)
    await stores.sessions.create_session("s1", user.id, 10.0, "", "")
    first = await stores.cache.lookup("s1")
    assert first is not None and first.user.roles == ("admin",)
    assert await stores.cache.lookup("s1") == first  # served again (from memory when the cache is on)
    await make_change(stores, change)
    check_changed(await stores.cache.lookup("s1"), change)


async def test_cached_rows_expire_after_the_ttl(stores: Stores, clock: FakeClock) -> None:
    """The last-resort bound: even a change nobody published is seen once the TTL has passed."""
    user = await stores.users.add_user("alice", "h", ("admin",), 1.0)
    await stores.sessions.create_session("s1", user.id, 10.0, "", "")
    assert await stores.cache.lookup("s1") is not None
    mark = stores.feed.mark

    stores.feed.mark = lambda: 42  # type: ignore[method-assign]  # a feed that never moves again
    try:
        assert await stores.cache.lookup("s1") is not None
        await stores.sessions.delete_session("s1")
        clock.now += stores.cache.ttl + 0.01 if stores.cache.enabled else 0
        assert await stores.cache.lookup("s1") is None
    finally:
        stores.feed.mark = mark  # type: ignore[method-assign]


async def test_a_lookup_racing_a_write_cannot_cache_the_old_row(stores: Stores) -> None:
    user = await stores.users.add_user("alice", "h", (), 1.0)
    await stores.sessions.create_session("s1", user.id, 10.0, "", "")
    # Start many lookups and a revocation at once; once the revocation returned, none may see the row.
    lookups = [asyncio.ensure_future(stores.cache.lookup("s1")) for _ in range(20)]
    await asyncio.sleep(0)  # let the lookups send their queries first: they read the old row
    await stores.sessions.delete_session("s1")
    await asyncio.gather(*lookups)
    assert await stores.cache.lookup("s1") is None



# --- factors


async def test_factors(stores: Stores) -> None:
    factors = stores.factors
    alice = await stores.users.add_user("alice", "h", (), 1.0)
    bob = await stores.users.add_user("bob", "h", (), 1.0)
    before = stores.feed.mark()
    phone = await factors.add_factor(alice.id, "totp", "phone", "sealed-key", 5.0)
    after = stores.feed.mark()
    # Every change is published (a PostgreSQL feed may be between heartbeats: None, no verdict).
    assert before is None or after is None or after != before
    key = await factors.add_factor(alice.id, "passkey", "yubikey", "credential", 6.0)
    await factors.add_factor(bob.id, "totp", "phone", "bob-key", 7.0)
    listed = await factors.list_factors(alice.id)
    assert listed == [phone, key]
    assert (phone.kind, phone.name, phone.secret, phone.created_at, phone.last_used) == (
        "totp", "phone", "sealed-key", 5.0, 0.0)
    assert not await factors.delete_factor(bob.id, key.id)  # only the owner's factor can go
    assert await factors.delete_factor(alice.id, key.id)
    assert not await factors.delete_factor(alice.id, key.id)
    assert [f.id for f in await factors.list_factors(alice.id)] == [phone.id]
    await factors.set_recovery_codes(alice.id, ["d1", "d2"], 8.0)
    assert await factors.delete_factors(alice.id) == 1
    assert await factors.list_factors(alice.id) == []
    assert await factors.count_recovery_codes(alice.id) == 0
    assert len(await factors.list_factors(bob.id)) == 1  # another user's factors stay


async def test_totp_steps_are_single_use_even_when_raced(stores: Stores) -> None:
    factors = stores.factors
    alice = await stores.users.add_user("alice", "h", (), 1.0)
    phone = await factors.add_factor(alice.id, "totp", "phone", "k", 1.0)
    key = await factors.add_factor(alice.id, "passkey", "key", "c", 1.0)
    # Two workers offering the same code at once: exactly one wins.
    won = await asyncio.gather(*(factors.use_totp_step(alice.id, phone.id, 100, 50.0) for _ in range(4)))
    assert sorted(won) == [False, False, False, True]
    assert not await factors.use_totp_step(alice.id, phone.id, 100, 51.0)
    assert not await factors.use_totp_step(alice.id, phone.id, 99, 51.0)  # an older code in the skew window
    assert await factors.use_totp_step(alice.id, phone.id, 101, 60.0)
    assert (await factors.list_factors(alice.id))[0].last_used == 60.0
    assert not await factors.use_totp_step(alice.id + 1000, phone.id, 200, 61.0)  # not the owner
    assert not await factors.use_totp_step(alice.id, key.id, 200, 61.0)  # not a TOTP factor


async def test_recovery_codes_are_single_use_and_replaced_as_a_set(stores: Stores) -> None:
    factors = stores.factors
    alice = await stores.users.add_user("alice", "h", (), 1.0)
    bob = await stores.users.add_user("bob", "h", (), 1.0)
    await factors.set_recovery_codes(alice.id, ["a1", "a2", "a3"], 2.0)
    await factors.set_recovery_codes(bob.id, ["b1"], 2.0)
    assert await factors.count_recovery_codes(alice.id) == 3
    assert not await factors.use_recovery_code(alice.id, "b1", 3.0)  # another user's code
    won = await asyncio.gather(*(factors.use_recovery_code(alice.id, "a1", 3.0) for _ in range(3)))
    assert sorted(won) == [False, False, True]
    assert await factors.count_recovery_codes(alice.id) == 2
    await factors.set_recovery_codes(alice.id, ["n1", "n2"], 4.0)  # regenerating voids the old set
    assert not await factors.use_recovery_code(alice.id, "a2", 5.0)
    assert await factors.use_recovery_code(alice.id, "n2", 5.0)
    assert await factors.count_recovery_codes(alice.id) == 1
    assert await factors.count_recovery_codes(bob.id) == 1


async def test_sessions_remember_the_second_factor(stores: Stores) -> None:
    user = await stores.users.add_user("alice", "h", (), 1.0)
    await stores.sessions.create_session("s-none", user.id, 10.0, "", "")
    await stores.sessions.create_session("s-totp", user.id, 10.0, "", "", mfa="totp")
    plain = await stores.sessions.get_session("s-none")
    passed = await stores.sessions.get_session("s-totp")
    assert plain is not None and plain.mfa == ""
    assert passed is not None and passed.mfa == "totp"
    assert {r.id_hash: r.mfa for r in await stores.sessions.list_sessions(user.id)} == {"s-none": "", "s-totp": "totp"}
    found = await stores.cache.lookup("s-totp")
    assert found is not None and found.session.mfa == "totp"
    with pytest.raises(ValueError):
        await stores.sessions.create_session("s-bad", user.id, 10.0, "", "", mfa="sms")
    assert await stores.sessions.get_session("s-bad") is None


async def test_completing_the_second_factor_rotates_the_session(stores: Stores, clock: FakeClock) -> None:
    sessions = SessionManager(stores, SessionSettings(True, 1800, 3600), clock=clock)
    user = await stores.users.add_user("alice", "h", (), clock.now)
    old = await sessions.start(user, "127.0.0.1", "ua", persistent=True)
    new = await sessions.complete_factor(old, "totp", "127.0.0.1", "ua")
    assert new is not None and new != old
    assert await sessions.resolve(old, client="127.0.0.1", user_agent="ua") is None
    active = await sessions.resolve(new, client="127.0.0.1", user_agent="ua")
    assert active is not None and active.record.mfa == "totp" and active.record.persistent
    assert await sessions.complete_factor(old, "totp", "127.0.0.1", "ua") is None  # the old id is spent
