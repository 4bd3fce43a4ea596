"""The store contract suite (tests/unit/store_contract.py) over PostgreSQL users beside SQLite
sessions, with the session cache off and on, and what only PostgreSQL does: several replicas on one
database, each following the change feed (also across a cut feed connection), the schema made once
when many processes open at once, SQLite's name semantics kept exactly. Outages are in
test_store_postgres_outage.py (a server of their own)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from pathlib import Path
from typing import NamedTuple

import asyncpg
import pytest

from gateway.store import AuditRecord, ChangeFeed, DuplicateUser, Stores, User
from gateway.store.postgres import FEED_NAME, STALE_AFTER, PostgresUserStore
from gateway.store.sqlite import SqliteStore
from tests.servers import PostgresServer
from tests.unit.store_contract import *  # noqa: F403  (the suite's tests and its clock fixture)
from tests.unit.store_contract import CACHE_TTL, FakeClock, check_changed, make_change

PROPAGATION = 1.0  # the contract: a change on one replica is in force on every replica within this


@pytest.fixture(params=["postgres", "postgres+cache", "postgres+cache-no-counter"])
async def stores(request: pytest.FixtureRequest, tmp_path: Path, clock: FakeClock,
                 postgres_server: PostgresServer) -> AsyncIterator[Stores]:
    counter = None if request.param.endswith("no-counter") else tmp_path / "users-changes"
    users = PostgresUserStore(postgres_server.create_database(), counter=counter)
    ttl = CACHE_TTL if "+cache" in request.param else 0.0
    instance = Stores(users, SqliteStore(tmp_path / "sessions.db"), cache_ttl=ttl, clock=clock)
    await instance.open()
    yield instance
    await instance.close()


async def eventually(check: Callable[[], Awaitable[bool]], within: float) -> float:
    """Poll ``check`` until it holds; the seconds it took. Fails once ``within`` has passed."""
    started = time.monotonic()
    while not await check():
        assert time.monotonic() - started < within, f"not within {within} s"
        await asyncio.sleep(0.005)
    return time.monotonic() - started


async def vouching(feed: ChangeFeed, within: float = PROPAGATION) -> int:
    """The feed's mark once it vouches (a heartbeat may be late on a busy machine)."""
    marks: list[int | None] = []

    async def check() -> bool:
        marks.append(feed.mark())
        return marks[-1] is not None

    await eventually(check, within)
    mark = marks[-1]
    assert mark is not None
    return mark


class Replica:
    """One gateway replica: its own PostgreSQL user store and its own sessions, the session cache on
    with a TTL far longer than the contract's second, so that only the change feed can end a cached row."""

    def __init__(self, url: str, folder: Path) -> None:
        self.users = PostgresUserStore(url)
        self.stores = Stores(self.users, SqliteStore(folder / "sessions.db"), cache_ttl=60.0)


class Pair(NamedTuple):
    url: str
    reader: Replica
    writer: Replica


@pytest.fixture
async def pair(postgres_server: PostgresServer, tmp_path: Path) -> AsyncIterator[Pair]:
    url = postgres_server.create_database()
    replicas = Pair(url, Replica(url, tmp_path / "reader"), Replica(url, tmp_path / "writer"))
    async with AsyncExitStack() as stack:
        for replica in (replicas.reader, replicas.writer):
            await replica.stores.open()
            stack.push_async_callback(replica.stores.close)
        yield replicas


async def signed_in(pair: Pair) -> int:
    """alice, added through the writer, with session "s1" on the reader, looked up there once (so
    cached); the reader's mark then."""
    user = await pair.writer.users.add_user("alice", "h", ("admin",), 1.0)
    await pair.reader.stores.sessions.create_session("s1", user.id, 10.0, "", "")

    async def found() -> bool:  # the reader may have been told of alice after its first lookup
        return await pair.reader.stores.cache.lookup("s1") is not None

    await eventually(found, PROPAGATION)
    return await vouching(pair.reader.stores.feed)


def moved_past(replica: Replica, before: int) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        mark = replica.stores.feed.mark()
        return mark is not None and mark > before

    return check


@pytest.mark.parametrize("change", ["disable", "roles", "password", "delete"])
async def test_a_change_on_one_replica_is_in_force_on_the_other_within_a_second(pair: Pair, change: str) -> None:
    before = await signed_in(pair)
    await make_change(pair.writer.stores, change)
    await eventually(moved_past(pair.reader, before), PROPAGATION)  # the notification, not the 60 s TTL
    check_changed(await pair.reader.stores.cache.lookup("s1"), change)


async def test_an_operators_own_sql_moves_every_mark(pair: Pair) -> None:
    """The trigger, not the store's code, bumps the counter: a change made in psql is seen too."""
    before = await signed_in(pair)
    conn = await asyncpg.connect(pair.url)
    try:
        await conn.execute("UPDATE gateway_users SET disabled = true WHERE name = 'alice'")
    finally:
        await conn.close()
    await eventually(moved_past(pair.reader, before), PROPAGATION)
    check_changed(await pair.reader.stores.cache.lookup("s1"), "disable")


async def test_a_forged_notification_cannot_freeze_the_marks(pair: Pair) -> None:
    """Any role that can connect may NOTIFY on the channel: the feed reads the counter from the table."""
    before = await signed_in(pair)
    conn = await asyncpg.connect(pair.url)
    try:
        await conn.execute(f"NOTIFY gateway_changes, '{2**62}'")  # delivered before the change's own
    finally:
        await conn.close()
    await make_change(pair.writer.stores, "roles")
    await eventually(moved_past(pair.reader, before), PROPAGATION)
    mark = pair.reader.stores.feed.mark()
    assert mark is not None and mark < 2**62  # moved by the change, not by the forged value
    check_changed(await pair.reader.stores.cache.lookup("s1"), "roles")


async def test_a_cut_feed_catches_up_and_never_vouches_for_the_old_value(pair: Pair) -> None:
    """Notifications sent while the feed's connection is down are lost: the change made just after
    the cut reaches the reader through the catch-up read, and meanwhile its mark vouches for nothing."""
    before = await signed_in(pair)
    conn = await asyncpg.connect(pair.url)
    try:
        cut = await conn.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE datname = current_database() AND application_name = $1", FEED_NAME)
    finally:
        await conn.close()
    assert cut == 2  # the reader's feed and the writer's
    changed = time.monotonic()
    await pair.writer.users.set_roles("alice", ("staff",))  # before the reader can listen again

    samples: list[tuple[float, int | None]] = []

    async def caught_up() -> bool:
        samples.append((time.monotonic() - changed, pair.reader.stores.feed.mark()))
        return await moved_past(pair.reader, before)()

    await eventually(caught_up, PROPAGATION)
    # Whether a sample catches the mark at None depends on timing (on a busy machine the reader may
    # reconnect and catch up before the first sample); what must hold is that it never vouches for
    # the old value once STALE_AFTER has passed.
    assert all(mark != before or at < STALE_AFTER for at, mark in samples)
    check_changed(await pair.reader.stores.cache.lookup("s1"), "roles")
    after = await vouching(pair.reader.stores.feed)
    await pair.writer.users.set_disabled("alice", True)  # and changes flow again
    await eventually(moved_past(pair.reader, after), PROPAGATION)


async def test_replicas_opening_a_new_database_at_once_make_the_schema_once(postgres_server: PostgresServer) -> None:
    url = postgres_server.create_database()
    stores = [PostgresUserStore(url) for _ in range(5)]
    async with AsyncExitStack() as stack:
        for store in stores:
            stack.push_async_callback(store.close)
        opened = await asyncio.gather(*(store.open() for store in stores), return_exceptions=True)
        assert opened == [None] * len(stores)  # without the schema lock, some fail on the catalog's unique index
        alice = await stores[0].add_user("alice", "h", ("b", "a"), 1.0)
        assert await stores[4].get_user_by_id(alice.id) == alice
        with pytest.raises(DuplicateUser):
            await stores[3].add_user("ALICE", "h", (), 2.0)
    again = PostgresUserStore(url)  # a schema already made is left as it is
    await again.open()
    try:
        assert await again.list_users() == [alice]
    finally:
        await again.close()


async def test_a_database_made_before_the_factor_tables_gains_them_on_open(postgres_server: PostgresServer) -> None:
    url = postgres_server.create_database()
    old = PostgresUserStore(url)
    await old.open()
    alice = await old.add_user("alice", "h", (), 1.0)
    await old.close()
    conn = await asyncpg.connect(url)  # back to the schema of the releases before second factors
    try:
        await conn.execute("DROP TABLE gateway_factors; DROP TABLE gateway_recovery_codes")
    finally:
        await conn.close()
    store = PostgresUserStore(url)
    await store.open()
    try:
        phone = await store.add_factor(alice.id, "totp", "phone", "k", 2.0)
        assert await store.use_totp_step(alice.id, phone.id, 7, 3.0)
        assert not await store.use_totp_step(alice.id, phone.id, 7, 3.0)
        assert await store.list_users() == [alice]
    finally:
        await store.close()


NAMES = ["bob", "Alice", "\u00e9mile", "\u00c9mile", "ZED", "_x", "alice2", "ALICE", "\u00c9MILE", "zed"]


async def exercise(store: SqliteStore | PostgresUserStore) -> tuple[object, ...]:
    """What a store answers to the same changes and questions (ids aside)."""
    refused = []
    for name in NAMES:
        try:
            await store.add_user(name, "h", ("b", "a"), 1.0)
        except DuplicateUser:
            refused.append(name)
    listing = [(u.name, u.roles, u.disabled, u.created_at) for u in await store.list_users()]
    found = [(u.name if u else None) for u in [await store.get_user(n) for n in ["alice", "\u00c9MILE", "zEd", "nobody"]]]
    users = [None, "Alice", "alice", "\u00c9mile", "\u00e9mile", "bob"]
    await store.add_audit([AuditRecord(float(t // 2), f"e{t}", user, "1.2.3.4" if t else None, '{"b": 1, "a": 2}')
                           for t, user in enumerate(users)])
    audit = [await store.list_audit(user="ALICE"), await store.list_audit(user="\u00e9mile"),
             await store.list_audit(since=1.0, limit=2), await store.list_audit(limit=0),
             await store.list_audit(limit=-1)]
    return refused, listing, found, audit


async def test_names_listings_and_the_audit_trail_behave_exactly_as_in_sqlite(
        postgres_server: PostgresServer, tmp_path: Path) -> None:
    results: list[tuple[object, ...]] = []
    for store in (SqliteStore(tmp_path / "same.db"), PostgresUserStore(postgres_server.create_database())):
        await store.open()
        try:
            results.append(await exercise(store))
        finally:
            await store.close()
    sqlite, postgres = results
    assert postgres == sqlite
    refused, listing, _, audit = sqlite
    assert refused == ["ALICE", "\u00c9MILE", "zed"]  # ASCII letters fold, others do not (NOCASE)
    assert [name for name, *_ in listing][:3] == ["_x", "Alice", "alice2"] and listing[0][1] == ("a", "b")
    assert [r.event for r in audit[0]] == ["e1", "e2"] and audit[4][0].detail == '{"b": 1, "a": 2}'


async def test_user_records_round_trip(postgres_server: PostgresServer) -> None:
    store = PostgresUserStore(postgres_server.create_database())
    await store.open()
    try:
        added = await store.add_user("pat", "$argon2id$x", ("z", "a"), 1234.5678)
        await store.set_password_hash("pat", "$argon2id$y", changed_at=2345.25)
        assert await store.get_user("pat") == User(added.id, "pat", "$argon2id$y", ("a", "z"), False, 1234.5678, 2345.25)
        await store.set_roles("pat", ())
        found = await store.get_user_by_id(added.id)
        assert found is not None and found.roles == ()
    finally:
        await store.close()
