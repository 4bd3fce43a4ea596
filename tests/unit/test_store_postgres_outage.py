"""PostgreSQL taken away and given back, hung, or never reachable: requests fail closed (StoreUnavailable,
so 503) within the timeout, the feed vouches for nothing, service resumes by itself, and every message
is one line naming host:port and never the password. A server of this module's own, so that stopping it
disturbs no other test."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import pytest

from gateway.store import AuditRecord, StoreError, StoreUnavailable
from gateway.store.postgres import TIMEOUT, PostgresUserStore
from tests.servers import PostgresServer, free_port
from tests.unit.test_store_postgres import eventually, vouching

PASSWORD = "n0t-in-any-message"  # the cluster trusts 127.0.0.1: a password in the URL is never asked for
ROLE, ROLE_PASSWORD = "gw_secret", "right-horse-battery"  # a role that must give its password
BOUNDED = TIMEOUT + 1.5  # a call on a dead or hung server fails within this


def psql(server: PostgresServer, sql: str) -> None:
    subprocess.run([str(server.bin / "psql"), "-h", "127.0.0.1", "-p", str(server.port), "-U", "postgres",
                    "-q", "-v", "ON_ERROR_STOP=1", "-c", sql], check=True, capture_output=True)


@pytest.fixture(scope="module")
def server() -> Iterator[PostgresServer]:
    with PostgresServer.running() as instance:
        psql(instance, f"CREATE ROLE {ROLE} LOGIN PASSWORD '{ROLE_PASSWORD}'")
        psql(instance, f"CREATE DATABASE {ROLE} OWNER {ROLE}")
        hba = instance.data / "pg_hba.conf"  # the first matching line wins: this role alone needs a password
        hba.write_text(f"host all {ROLE} 127.0.0.1/32 scram-sha-256\n" + hba.read_text())
        psql(instance, "SELECT pg_reload_conf()")
        yield instance


@pytest.fixture
async def store(server: PostgresServer) -> AsyncIterator[PostgresUserStore]:
    url = server.create_database().replace("postgres@", f"postgres:{PASSWORD}@")
    instance = PostgresUserStore(url)
    await instance.open()
    try:
        yield instance
    finally:
        await instance.close()
        if not await asyncio.to_thread(running, server):  # a test that failed half-way
            await asyncio.to_thread(server.start)


def running(server: PostgresServer) -> bool:
    return (server.data / "postmaster.pid").exists()


def calls(store: PostgresUserStore) -> dict[str, Callable[[], Awaitable[object]]]:
    return {
        "get_user": lambda: store.get_user("alice"),
        "get_user_by_id": lambda: store.get_user_by_id(1),
        "list_users": store.list_users,
        "add_user": lambda: store.add_user("bob", "h", (), 2.0),
        "set_roles": lambda: store.set_roles("alice", ("staff",)),
        "add_audit": lambda: store.add_audit([AuditRecord(1.0, "e", "alice", None, "{}")]),
        "list_audit": store.list_audit,
    }


async def fail_closed(store: PostgresUserStore, server: PostgresServer) -> None:
    """The feed stops vouching within a second; then every call, all at once (more than the pool
    holds), raises StoreUnavailable within BOUNDED seconds with one line naming the server, and ping
    says no."""

    async def outcome(call: Callable[[], Awaitable[object]]) -> tuple[float, BaseException | None]:
        started = time.monotonic()
        try:
            await call()
        except Exception as exc:
            return time.monotonic() - started, exc
        return time.monotonic() - started, None

    async def stale() -> bool:
        return store.feed.mark() is None

    await eventually(stale, 1.0)
    named = calls(store)
    results = await asyncio.gather(store.ping(), *(outcome(call) for call in named.values()))
    assert results[0] is False
    for name, (took, exc) in zip(named, results[1:], strict=True):
        assert isinstance(exc, StoreUnavailable) and took < BOUNDED, (name, took, exc)
        check_message(str(exc), f"127.0.0.1:{server.port}")
    assert store.feed.mark() is None


async def resumes(store: PostgresUserStore) -> None:
    """Service comes back by itself: reads, writes, and a feed that vouches and moves again."""
    await eventually(store.ping, 15.0)
    await store.set_roles("alice", ("back",))
    found = await store.get_user("alice")
    assert found is not None and found.roles == ("back",)

    before = await vouching(store.feed, 3.0)  # the feed retries at most a second apart
    await store.set_disabled("alice", True)

    async def moved() -> bool:
        mark = store.feed.mark()
        return mark is not None and mark > before

    await eventually(moved, 1.0)


def check_message(message: str, where: str) -> None:
    assert message.startswith(f"PostgreSQL at {where}/") and "\n" not in message, message
    assert PASSWORD not in message and ROLE_PASSWORD not in message, message


async def test_a_stopped_server_fails_requests_closed_and_service_resumes_by_itself(
        store: PostgresUserStore, server: PostgresServer, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "gateway.store")
    await store.add_user("alice", "h", ("admin",), 1.0)
    assert await vouching(store.feed) and await store.ping()
    # The cluster commits asynchronously and stop() crashes it: make the data so far durable first.
    await asyncio.to_thread(psql, server, "CHECKPOINT")
    await asyncio.to_thread(server.stop)
    try:
        await fail_closed(store, server)
    finally:
        await asyncio.to_thread(server.start)
    await resumes(store)
    assert "change feed lost" in caplog.text and "following changes again" in caplog.text
    assert PASSWORD not in caplog.text


def cluster_pids(server: PostgresServer) -> list[int]:
    """The postmaster and every process it started."""
    postmaster = int((server.data / "postmaster.pid").read_text().split()[0])
    children = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue  # gone meanwhile
            if int(stat.rpartition(")")[2].split()[1]) == postmaster:
                children.append(int(entry.name))
    return [postmaster, *children]


async def test_a_hung_server_never_hangs_a_request(store: PostgresUserStore, server: PostgresServer) -> None:
    await store.add_user("alice", "h", ("admin",), 1.0)
    pids = cluster_pids(server)
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)  # connections stay open, nothing answers
    try:
        await fail_closed(store, server)
    finally:
        for pid in pids:
            os.kill(pid, signal.SIGCONT)
    await resumes(store)


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port whose connections are taken by the kernel and never answered (a hung host)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        yield sock.getsockname()[1]


@pytest.mark.parametrize(("case", "reason"), [
    ("wrong password", 'password authentication failed for user "gw_secret"'),
    ("nobody listening", "Connect call failed"),
    ("hung host", f"no answer within {TIMEOUT:g} s"),
    ("no such database", 'database "nosuchdb" does not exist'),
    ("bad port", "bad URL: invalid literal for int()"),
])
async def test_open_says_in_one_line_which_server_failed_and_why_never_the_password(
        server: PostgresServer, silent_port: int, case: str, reason: str) -> None:
    port = {"nobody listening": free_port(), "hung host": silent_port}.get(case, server.port)
    user, database = {"wrong password": (f"{ROLE}:wrong-{ROLE_PASSWORD}", ROLE)}.get(
        case, (f"postgres:{PASSWORD}", "nosuchdb" if case == "no such database" else "postgres"))
    where = f"127.0.0.1:{'port' if case == 'bad port' else ''}{port}"
    url = f"postgresql://{user}@{where}/{database}"
    store = PostgresUserStore(url)
    assert PASSWORD not in repr(store) and ROLE_PASSWORD not in repr(store)
    started = time.monotonic()
    with pytest.raises(StoreError) as caught:
        await store.open()
    assert time.monotonic() - started < BOUNDED
    message = str(caught.value)
    check_message(message, where)
    assert reason in message, message
    await store.close()  # a store that failed to open closes without complaint


async def test_the_right_password_opens(server: PostgresServer) -> None:
    """The wrong-password case above fails on the password, not on the role's set-up."""
    store = PostgresUserStore(f"postgresql://{ROLE}:{ROLE_PASSWORD}@127.0.0.1:{server.port}/{ROLE}")
    await store.open()
    try:
        assert await store.ping()
    finally:
        await store.close()
