"""What only the Redis session store does (the contract it shares with every store is run by
test_store_redis.py): replicas that hear of each other's changes, a feed that resumes after a cut,
outages and wipes, damaged records, a server that answers garbage, and throttling across replicas.

"Replicas" are independent store instances with no shared counter file: they learn of changes only
through Redis. Waits are polls for a condition with a deadline, never sleeps."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from gateway.store import BackOff, StoreError, Stores, StoreUnavailable
from gateway.store.feed import SharedCounter
from gateway.store.redis_client import MAX_CONNECTIONS, TIMEOUT, parse_redis_url
from gateway.store.redis_feed import STALE_AFTER
from gateway.store.redis_sessions import FEED_CLIENT_NAME, LIST_PAGE, SESSION_TTL, RedisSessionStore
from gateway.store.sqlite import SqliteStore
from tests.servers import RedisServer

H1, H2, H3 = ("a1" * 32), ("b2" * 32), ("c3" * 32)  # session ids as the store sees them: SHA-256 hex


async def until(check: Callable[[], bool], timeout: float = 3.0) -> float:
    """Poll for ``check`` (the condition decides, not the time); the seconds it took."""
    start = time.monotonic()
    while not check():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"not reached within {timeout} s")
        await asyncio.sleep(0.005)
    return time.monotonic() - start


async def until_async(check: Callable[[], Awaitable[bool]], timeout: float = 10.0) -> None:
    start = time.monotonic()
    while not await check():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"not reached within {timeout} s")
        await asyncio.sleep(0.02)


@contextlib.asynccontextmanager
async def opened(url: str, counter: Path | None = None) -> AsyncIterator[RedisSessionStore]:
    store = RedisSessionStore(url, counter=counter)
    await store.open()
    try:
        yield store
    finally:
        await store.close()


@pytest.fixture
async def admin(redis_server: RedisServer) -> AsyncIterator[aioredis.Redis]:
    """The operator's (or the attacker's) own connection to the server, flushed first."""
    redis_server.flush()
    client: aioredis.Redis = aioredis.Redis.from_url(redis_server.url(), decode_responses=True, protocol=2)
    yield client
    await client.aclose()


@pytest.fixture
async def replicas(admin: aioredis.Redis,
                   redis_server: RedisServer) -> AsyncIterator[tuple[RedisSessionStore, RedisSessionStore]]:
    async with opened(redis_server.url()) as one, opened(redis_server.url()) as two:
        yield one, two


async def settled(admin: aioredis.Redis, *stores: RedisSessionStore, prefix: str = "gateway:") -> None:
    """Every store's feed vouches and has read the whole stream so far (up to a marker added last),
    so that a mark taken now moves only for what comes next."""
    for store in stores:
        await until(lambda store=store: store.feed.mark() is not None)
    marker = await admin.xadd(prefix + "changes", {"change": "marker"})
    for store in stores:
        await store.stream.seen(marker)


def moved(store: RedisSessionStore, before: int | None) -> Callable[[], bool]:
    return lambda: (mark := store.feed.mark()) is not None and before is not None and mark > before


# --- replicas hear of each other's changes


async def test_a_sign_out_on_one_replica_moves_the_others_mark_within_a_second(
        replicas: tuple[RedisSessionStore, RedisSessionStore], admin: aioredis.Redis) -> None:
    one, two = replicas
    await one.create_session(H1, 7, 100.0, "10.0.0.1", "ua")
    record = await two.get_session(H1)
    assert record is not None and record.user_id == 7
    await settled(admin, two)
    before = two.feed.mark()
    assert await one.delete_session(H1)
    assert await until(moved(two, before)) < 1.0
    assert await two.get_session(H1) is None


async def test_a_replicas_cache_drops_a_revoked_session_within_a_second(tmp_path: Path, admin: aioredis.Redis,
                                                                       redis_server: RedisServer) -> None:
    """End to end through the session cache: a TTL far longer than a second, so only the feed can
    have told the second replica."""
    sessions = RedisSessionStore(redis_server.url())
    one = Stores(SqliteStore(tmp_path / "users.db"), RedisSessionStore(redis_server.url()))
    two = Stores(SqliteStore(tmp_path / "users.db"), sessions, cache_ttl=60.0)
    await one.open()
    await two.open()
    try:
        alice = await one.users.add_user("alice", "h", (), 1.0)
        await one.sessions.create_session(H1, alice.id, 10.0, "", "")
        await settled(admin, sessions)  # the creation is no news any more: what is cached now stays
        assert await two.cache.lookup(H1) is not None
        assert len(two.cache) == 2  # the session and its user, served from memory from now on
        await one.sessions.delete_session(H1)
        signed_out = time.monotonic()
        await until_async(lambda: _gone(two, H1))
        assert time.monotonic() - signed_out < 1.0
    finally:
        await one.close()
        await two.close()


async def _gone(stores: Stores, id_hash: str) -> bool:
    return await stores.cache.lookup(id_hash) is None


async def test_publish_returns_once_this_process_sees_it_and_bumps_the_machines_counter(
        tmp_path: Path, admin: aioredis.Redis, redis_server: RedisServer) -> None:
    sibling = SharedCounter(tmp_path / "changes")  # another worker of this machine
    await sibling.open()
    try:
        async with opened(redis_server.url(), counter=tmp_path / "changes") as store:
            await until(lambda: store.feed.mark() is not None)
            mark, theirs = store.feed.mark() or 0, sibling.mark() or 0
            await store.feed.publish()
            assert (store.feed.mark() or 0) > mark
            assert sibling.mark() == theirs + 1
            await store.create_session(H1, 1, 1.0, "", "")
            assert sibling.mark() == theirs + 2  # before create_session returned
            assert await store.delete_session(H1) and sibling.mark() == theirs + 3
            assert not await store.delete_session(H1) and sibling.mark() == theirs + 3  # nothing changed
    finally:
        await sibling.close()


async def test_an_idle_clock_refresh_is_no_change(replicas: tuple[RedisSessionStore, RedisSessionStore],
                                                  admin: aioredis.Redis) -> None:
    one, two = replicas
    await one.create_session(H1, 7, 100.0, "", "")
    await settled(admin, two)
    before = two.stream.mark()
    await one.touch_sessions({H1: 160.0})
    await one.feed.publish()  # a marker after the refresh: once it arrives, the refresh would have too
    await until(moved(two, before))
    assert two.stream.mark() == (before or 0) + 1


async def test_a_burst_of_lookups_larger_than_the_pool_waits_for_connections(
        replicas: tuple[RedisSessionStore, RedisSessionStore]) -> None:
    store, _ = replicas
    await store.create_session(H1, 7, 100.0, "", "")
    found = await asyncio.gather(*(store.get_session(H1) for _ in range(MAX_CONNECTIONS * 5)))
    assert all(record is not None and record.user_id == 7 for record in found)


# --- the feed resumes after a cut


class Relay:
    """A TCP relay in front of a Redis server (or of nothing) that can cut its connections, hold new
    ones, or answer what the client sends with garbage (or with silence)."""

    def __init__(self, upstream: int | None, *, mode: str = "proxy", garbage: bytes = b"") -> None:
        self.upstream = upstream
        self.mode = mode  # "proxy", "garbage" or "silent"
        self.garbage = garbage
        self.released = asyncio.Event()
        self.released.set()
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._server: asyncio.Server | None = None
        self.port = 0

    async def __aenter__(self) -> Relay:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        self.cut()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def cut(self) -> None:
        for writer in list(self._writers):
            writer.transport.abort()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self._writers.add(writer)
        upstream: asyncio.StreamWriter | None = None
        try:
            await self.released.wait()  # held: accepted, not yet connected through
            if self.upstream is not None:
                up_reader, upstream = await asyncio.open_connection("127.0.0.1", self.upstream)
                self._writers.add(upstream)
                back = asyncio.ensure_future(self._pump(up_reader, writer))
            while data := await reader.read(65536):
                if self.mode == "proxy" and upstream is not None:
                    upstream.write(data)
                elif self.mode == "garbage":
                    writer.write(self.garbage)
                    await writer.drain()
            if upstream is not None:
                back.cancel()
                await asyncio.gather(back, return_exceptions=True)
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            for end in (writer, upstream):
                if end is not None:
                    self._writers.discard(end)
                    end.transport.abort()
            self._tasks.discard(task)

    @staticmethod
    async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError):
            while data := await reader.read(65536):
                writer.write(data)
            writer.transport.abort()


async def test_a_change_made_while_the_feed_was_cut_is_caught_up_on(admin: aioredis.Redis,
                                                                   redis_server: RedisServer) -> None:
    """The reader's connection is cut and kept from coming back until a change was made on another
    replica: on its return it reads on from the last entry it saw, so the change still counts."""
    async with Relay(redis_server.port) as relay, opened(redis_server.url()) as one, opened(relay.url()) as two:
        await one.create_session(H1, 7, 100.0, "", "")
        await settled(admin, two)
        before = two.stream.mark()
        relay.released.clear()
        relay.cut()
        assert await one.delete_session(H1)  # while the second replica cannot read the stream
        await until(lambda: two.stream.mark() is None)  # its cache stops trusting itself meanwhile
        relay.released.set()
        await until(moved(two, before))
        assert two.stream.mark() == (before or 0) + 1  # that change, once
        assert await two.get_session(H1) is None


async def test_killed_connections_come_back_by_themselves(replicas: tuple[RedisSessionStore, RedisSessionStore],
                                                          admin: aioredis.Redis) -> None:
    one, two = replicas
    await one.create_session(H1, 7, 100.0, "", "")
    await settled(admin, two)
    readers = [c for c in await admin.client_list() if c["name"] == FEED_CLIENT_NAME]
    assert len(readers) == 2  # one feed reader per store, on its own connection
    before = two.feed.mark()
    for client in readers:
        await admin.client_kill_filter(_id=client["id"])
    await admin.client_kill_filter(_type="normal", skipme=True)  # the command connections as well
    assert await one.delete_session(H1)  # through a pool whose connection was killed: no retry needed
    await until(moved(two, before), timeout=1.0)
    assert await two.get_session(H1) is None


# --- outages and wipes


async def test_a_stopped_server_fails_closed_and_service_resumes_by_itself(admin: aioredis.Redis,
                                                                          redis_server: RedisServer) -> None:
    async with opened(redis_server.url()) as store:
        await store.create_session(H1, 7, 100.0, "", "")
        await settled(admin, store)
        before = store.feed.mark()
        redis_server.stop()
        try:
            started = time.monotonic()
            with pytest.raises(StoreUnavailable):
                await store.get_session(H1)
            with pytest.raises(StoreUnavailable):
                await store.create_session(H2, 7, 100.0, "", "")
            with pytest.raises(StoreUnavailable):
                await store.reserve_attempt({"acct:a": BackOff(3, 1.0, 60.0)}, 100.0, 3600.0)
            assert not await store.ping()
            assert time.monotonic() - started < 3.0
            await until(lambda: store.feed.mark() is None, timeout=STALE_AFTER + 1.0)
        finally:
            redis_server.start()
        await until_async(store.ping)  # the same store object, not reopened
        await until(lambda: store.feed.mark() is not None)
        assert (store.feed.mark() or 0) > (before or 0)  # the restart emptied it: a change
        assert await store.get_session(H1) is None  # no persistence: the session is gone, not guessed
        await store.create_session(H2, 7, 200.0, "", "")  # its scripts are loaded again as needed
        assert (await store.get_session(H2)) is not None


async def test_a_wipe_is_noticed_at_the_next_heartbeat(replicas: tuple[RedisSessionStore, RedisSessionStore],
                                                       admin: aioredis.Redis) -> None:
    one, two = replicas
    await one.create_session(H1, 7, 100.0, "", "")
    await settled(admin, one, two)
    before = [one.feed.mark(), two.feed.mark()]
    await admin.flushall()
    assert await until(moved(one, before[0])) < 1.0
    assert await until(moved(two, before[1])) < 1.0
    assert await two.get_session(H1) is None
    # Both read the new stream from its start: changes after the wipe still reach the other replica.
    await settled(admin, two)
    after = two.feed.mark()
    await one.create_session(H2, 7, 200.0, "", "")
    await until(moved(two, after), timeout=1.0)
    assert [s.id_hash for s in await two.list_sessions()] == [H2]


async def test_a_feed_that_cannot_vouch_says_none(replicas: tuple[RedisSessionStore, RedisSessionStore]) -> None:
    one, _ = replicas
    await until(lambda: one.feed.mark() is not None)
    await one.close()
    assert one.feed.mark() is None
    with pytest.raises(StoreUnavailable):
        await one.get_session(H1)
    assert not await one.ping()


# --- damaged records


DAMAGE: dict[str, list[str]] = {
    "junk time": ["HSET", "{key}", "last_seen", "junk"],
    "nan time": ["HSET", "{key}", "last_seen", "nan"],
    "infinite time": ["HSET", "{key}", "created_at", "inf"],
    "fractional user": ["HSET", "{key}", "user_id", "1.5"],
    "negative user": ["HSET", "{key}", "user_id", "-1"],
    "persistent neither 0 nor 1": ["HSET", "{key}", "persistent", "yes"],
    "unknown second factor": ["HSET", "{key}", "mfa", "totp "],
    "missing field": ["HDEL", "{key}", "auth_time"],
    "a string": ["SET", "{key}", "x"],
    "a list": ["EVAL", "redis.call('DEL', KEYS[1]); return redis.call('RPUSH', KEYS[1], 'x')", "1", "{key}"],
}


@pytest.mark.parametrize("damage", sorted(DAMAGE))
async def test_a_damaged_session_reads_as_an_error_never_as_a_session(
        replicas: tuple[RedisSessionStore, RedisSessionStore], admin: aioredis.Redis, damage: str) -> None:
    store, _ = replicas
    await store.create_session(H1, 7, 100.0, "", "")
    await store.create_session(H2, 7, 100.0, "", "")
    key = "gateway:session:" + H1
    await admin.execute_command(*[part.format(key=key) for part in DAMAGE[damage]])
    with pytest.raises(StoreError):
        await store.get_session(H1)
    with pytest.raises(StoreError):
        await store.list_sessions()
    await store.touch_sessions({H1: 500.0, H2: 500.0})  # the damaged one is left alone, the others refreshed
    refreshed = await store.get_session(H2)
    assert refreshed is not None and refreshed.last_seen == 500.0
    assert await store.delete_session(H1)  # ending it works whatever it holds
    assert await store.get_session(H1) is None
    assert [s.id_hash for s in await store.list_sessions(7)] == [H2]


async def test_a_session_from_before_second_factors_passed_none(
        replicas: tuple[RedisSessionStore, RedisSessionStore], admin: aioredis.Redis) -> None:
    store, _ = replicas
    await store.create_session(H1, 7, 100.0, "", "", mfa="totp")
    await admin.hdel("gateway:session:" + H1, "mfa")  # as an older release wrote it
    record = await store.get_session(H1)
    assert record is not None and record.mfa == ""


async def test_a_damaged_stream_turns_every_cache_off_until_repaired(
        replicas: tuple[RedisSessionStore, RedisSessionStore], admin: aioredis.Redis) -> None:
    one, two = replicas
    await one.create_session(H1, 7, 100.0, "", "")
    await settled(admin, one, two)
    await admin.delete("gateway:changes")
    await admin.set("gateway:changes", "junk")  # XREAD and XADD now fail
    await until(lambda: one.feed.mark() is None and two.feed.mark() is None)
    with pytest.raises(StoreError):
        await one.delete_session(H1)  # not announced, so not reported as done...
    assert await two.get_session(H1) is None  # ...but ended all the same, and no cache serves it
    await admin.delete("gateway:changes")
    await until(lambda: one.feed.mark() is not None and two.feed.mark() is not None)
    await one.create_session(H2, 7, 100.0, "", "")
    assert await two.get_session(H2) is not None


async def test_a_damaged_throttle_counter_is_an_error(replicas: tuple[RedisSessionStore, RedisSessionStore],
                                                      admin: aioredis.Redis) -> None:
    store, _ = replicas
    await store.record_failure(["acct:a"], 100.0, 3600.0)
    await admin.hset("gateway:throttle:acct:a", "failures", "many")
    with pytest.raises(StoreError):
        await store.get_throttle(["acct:a"])
    with pytest.raises(StoreError):
        await store.record_failure(["acct:a"], 101.0, 3600.0)


# --- a server that answers garbage


GARBAGE = {
    "bytes": b"\x00\xff\xfe\x01 garbage\r\n",
    "a status for everything": b"+OK\r\n",
    "a number for everything": b":42\r\n",
    "an empty list for everything": b"*0\r\n",
    "an error for everything": b"-WRONGTYPE no\r\n",
    "a bulk string that never ends": b"$999999999\r\nabc",
    "silence": b"",
}


@pytest.mark.parametrize("answer", sorted(GARBAGE))
async def test_a_server_answering_garbage_cannot_be_opened(answer: str) -> None:
    async with Relay(None, mode="garbage" if GARBAGE[answer] else "silent", garbage=GARBAGE[answer]) as fake:
        store = RedisSessionStore(fake.url())
        started = time.monotonic()
        with pytest.raises(StoreError):
            await store.open()
        assert time.monotonic() - started < TIMEOUT + 1.0
        assert store.feed.mark() is None
        assert not await store.ping()


@pytest.mark.parametrize("answer", sorted(GARBAGE))
async def test_a_server_that_starts_answering_garbage_fails_closed_then_recovers(
        admin: aioredis.Redis, redis_server: RedisServer, answer: str) -> None:
    async with Relay(redis_server.port) as relay, opened(relay.url()) as store:
        await store.create_session(H1, 7, 100.0, "", "")
        await store.record_failure(["acct:a"], 100.0, 3600.0)
        relay.garbage = GARBAGE[answer]
        relay.mode = "garbage" if relay.garbage else "silent"
        # A reply of the wrong kind is an error; an empty reply may read as "nothing there" (real
        # Redis answers a missing hash that way): never as a session, a count or an admitted attempt.
        reads: dict[str, Callable[[], Awaitable[object]]] = {
            "get": lambda: store.get_session(H1),
            "list": lambda: store.list_sessions(),
            "find": lambda: store.find_sessions("a1"),
            "count": lambda: store.count_sessions(created_after=0.0, seen_after=0.0),
        }
        writes: dict[str, Callable[[], Awaitable[object]]] = {
            "create": lambda: store.create_session(H2, 7, 100.0, "", ""),
            "delete": lambda: store.delete_session(H1),
            "delete user": lambda: store.delete_user_sessions(7),
            "reserve": lambda: store.reserve_attempt({"acct:a": BackOff(3, 1.0, 60.0)}, 100.0, 3600.0),
            "throttle": lambda: store.get_throttle(["acct:a"]),
        }
        outcomes = dict(zip([*reads, *writes], await asyncio.gather(
            *(_outcome(call) for call in [*reads.values(), *writes.values()])), strict=True))
        late = {name: took for name, (_, took) in outcomes.items() if took > TIMEOUT + 1.0}
        assert late == {}
        wrong = {name: result for name, (result, _) in outcomes.items()
                 if not isinstance(result, StoreError) and (name in writes or result not in (None, [], {}))}
        assert wrong == {}
        assert not await store.ping()
        await until(lambda: store.feed.mark() is None, timeout=TIMEOUT + 1.0)
        relay.mode = "proxy"
        relay.cut()  # connections that read half an answer are not reused: the client drops them
        await until_async(store.ping)
        await until(lambda: store.feed.mark() is not None)
        record = await store.get_session(H1)
        assert record is not None and record.user_id == 7  # nothing was changed by the garbage


async def _outcome(call: Callable[[], Awaitable[object]]) -> tuple[object, float]:
    """What the call returned or raised (StoreError only: anything else fails the test), and how
    long it took."""
    started = time.monotonic()
    try:
        result = await call()
    except StoreError as exc:
        result = exc
    return result, time.monotonic() - started


# --- throttling across replicas


async def test_throttle_rules_hold_across_replicas(replicas: tuple[RedisSessionStore, RedisSessionStore]) -> None:
    one, two = replicas
    rules = {"acct:alice": BackOff(free=3, base=10.0, cap=60.0), "ip:10.0.0.1": BackOff(free=20, base=1.0, cap=60.0)}
    assert [await store.reserve_attempt(rules, 100.0, 3600.0) for store in (one, two, one)] == [0.0, 0.0, 0.0]
    assert await two.reserve_attempt(rules, 100.5, 3600.0) == pytest.approx(9.5)  # the 4th, on either replica
    state = await one.get_throttle(list(rules))
    assert state["acct:alice"].failures == 3 and state["ip:10.0.0.1"].failures == 3


async def test_concurrent_attempts_on_both_replicas_never_admit_more_than_allowed(
        replicas: tuple[RedisSessionStore, RedisSessionStore]) -> None:
    one, two = replicas
    rules = {"acct:bob": BackOff(free=3, base=5.0, cap=60.0)}
    waits = await asyncio.gather(*(store.reserve_attempt(rules, 200.0, 3600.0) for _ in range(15) for store in (one, two)))
    assert sum(1 for wait in waits if wait == 0.0) == 3
    assert all(wait == pytest.approx(5.0) for wait in waits if wait)
    assert (await two.get_throttle(["acct:bob"]))["acct:bob"].failures == 3


async def test_throttle_counters_expire_after_their_window(replicas: tuple[RedisSessionStore, RedisSessionStore],
                                                           admin: aioredis.Redis) -> None:
    store, _ = replicas
    await store.record_failure(["acct:a"], 100.0, 60.0)
    ttl = await admin.pttl("gateway:throttle:acct:a")
    assert 60_000 < ttl <= 61_000


# --- keys, expiry and URLs


async def test_sessions_expire_by_themselves_long_after_any_idle_timeout(
        replicas: tuple[RedisSessionStore, RedisSessionStore], admin: aioredis.Redis) -> None:
    store, _ = replicas
    await store.create_session(H1, 7, 100.0, "", "")
    for key in ("gateway:session:" + H1, "gateway:user:7"):
        assert SESSION_TTL - 5 < await admin.ttl(key) <= SESSION_TTL
        await admin.expire(key, 1000)
    await store.touch_sessions({H1: 160.0})  # in use: the expiry moves away again
    for key in ("gateway:session:" + H1, "gateway:user:7"):
        assert SESSION_TTL - 5 < await admin.ttl(key) <= SESSION_TTL
    # Expired (as if 400 days had passed): gone, and the listings forget it.
    await store.create_session(H2, 7, 100.0, "", "")
    await admin.delete("gateway:session:" + H1)
    assert [s.id_hash for s in await store.list_sessions(7)] == [H2]
    assert [s.id_hash for s in await store.list_sessions()] == [H2]
    assert await admin.zrange("gateway:sessions", 0, -1) == [H2]
    assert await admin.smembers("gateway:user:7") == {H2}


async def test_listings_longer_than_a_page(replicas: tuple[RedisSessionStore, RedisSessionStore]) -> None:
    store, _ = replicas
    ids = [f"{i:04x}" + "e" * 60 for i in range(LIST_PAGE * 2 + 7)]
    await asyncio.gather(*(store.create_session(id_hash, i % 3, float(i), "", "") for i, id_hash in enumerate(ids)))
    assert [s.id_hash for s in await store.list_sessions()] == ids  # by creation time
    assert [s.id_hash for s in await store.list_sessions(1)] == ids[1::3]
    assert [s.id_hash for s in await store.find_sessions("00")] == ids[:256]
    assert await store.count_sessions(created_after=float(len(ids) - 30), seen_after=0.0) == {0: 10, 1: 10, 2: 10}
    assert await store.delete_all_sessions() == len(ids)
    assert await store.list_sessions() == []


async def test_only_hashes_of_ids_are_stored(replicas: tuple[RedisSessionStore, RedisSessionStore],
                                             admin: aioredis.Redis) -> None:
    store, _ = replicas
    await store.create_session(H1, 7, 100.0, "10.0.0.1", "Firefox", persistent=True, binding="b" * 32)
    keys = sorted(await admin.keys("*"))
    assert keys == ["gateway:changes", "gateway:epoch", "gateway:session:" + H1, "gateway:sessions", "gateway:user:7"]
    assert await admin.hgetall("gateway:session:" + H1) == {
        "user_id": "7", "created_at": "100.0", "auth_time": "100.0", "last_seen": "100.0", "client": "10.0.0.1",
        "user_agent": "Firefox", "persistent": "1", "binding": "b" * 32, "mfa": ""}


async def test_times_read_back_exactly(replicas: tuple[RedisSessionStore, RedisSessionStore]) -> None:
    store, _ = replicas
    now = 1_733_000_000.123456789
    await store.create_session(H1, 7, now, "", "")
    await store.touch_sessions({H1: now + 0.1})
    await store.touch_sessions({H1: now + 0.05})  # never back
    record = await store.get_session(H1)
    assert record is not None and record.created_at == now and record.last_seen == now + 0.1
    assert await store.count_sessions(created_after=now, seen_after=now + 0.1) == {7: 1}
    assert await store.count_sessions(created_after=now, seen_after=now + 0.11) == {}


async def test_a_prefix_keeps_gateways_sharing_a_server_apart(admin: aioredis.Redis, redis_server: RedisServer) -> None:
    async with opened(redis_server.url() + "?prefix=blue:") as blue, opened(redis_server.url()) as green:
        await blue.create_session(H1, 7, 100.0, "", "")
        assert await green.get_session(H1) is None and await green.list_sessions() == []
        assert await green.delete_all_sessions() == 0
        assert await blue.get_session(H1) is not None
        assert await admin.exists("blue:session:" + H1)


def test_urls() -> None:
    parsed = parse_redis_url("redis://:s3cret@cache.internal:6380/2?prefix=gw1:")
    assert parsed.prefix == "gw1:" and "s3cret" not in parsed.shown and parsed.shown == "redis://cache.internal:6380/2"
    assert "prefix" not in parsed.url and "s3cret" in parsed.url
    assert parse_redis_url("rediss://cache.internal").prefix == "gateway:"
    for bad in ("http://cache.internal", "redis://", "redis://host:port/0", "redis://h/0?prefix=", "redis://h/0?prefix=a b"):
        with pytest.raises(StoreError):
            parse_redis_url(bad)
    with pytest.raises(StoreError) as refused:
        RedisSessionStore("redis://:s3cret@cache.internal:6380/0?socket_timeout=soon")
    assert "s3cret" not in str(refused.value)
