"""The user stores' personal access tokens, SQLite and PostgreSQL (the contract suite does not cover
them yet: the lead merges these into tests/unit/store_contract.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from gateway.store import TokenRecord, TokenStore
from gateway.store.postgres import PostgresUserStore
from gateway.store.sqlite import SqliteStore
from tests.servers import PostgresServer

Backend = SqliteStore | PostgresUserStore


@pytest.fixture(params=["sqlite", "postgres"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Backend]:
    instance: Backend
    if request.param == "sqlite":
        instance = SqliteStore(tmp_path / "gateway.db")
    else:
        server: PostgresServer = request.getfixturevalue("postgres_server")
        instance = PostgresUserStore(server.create_database(), counter=tmp_path / "users-changes")
    await instance.open()
    yield instance
    await instance.close()


def record(digest: str, user_id: int = 1, roles: tuple[str, ...] = ("a", "b")) -> TokenRecord:
    return TokenRecord(digest, user_id, "ci", roles, 10.0, 100.0)


async def test_add_get_list_revoke(store: Backend) -> None:
    assert isinstance(store, TokenStore)
    before = store.feed.mark()
    await store.add_token(record("aa" * 32))
    assert store.feed.mark() != before  # a new token is a change every process sees
    await store.add_token(record("bb" * 32, user_id=2, roles=("b", "a")))
    found = await store.get_token("aa" * 32)
    assert found == record("aa" * 32)
    assert (await store.get_token("bb" * 32)) == record("bb" * 32, user_id=2)  # roles kept sorted
    assert await store.get_token("cc" * 32) is None
    assert [t.digest for t in await store.list_tokens()] == ["aa" * 32, "bb" * 32]
    assert [t.digest for t in await store.list_tokens(2)] == ["bb" * 32]

    mark = store.feed.mark()
    assert await store.revoke_token("aaaaaaaaaaaa") == 1
    assert store.feed.mark() != mark  # revocation reaches every cache at once
    assert await store.get_token("aa" * 32) is None
    assert await store.revoke_token("aaaaaaaaaaaa") == 0
    assert await store.revoke_token("") == 0 and await store.revoke_token("b") == 0  # too short
    assert await store.revoke_user_tokens(2) == 1
    assert await store.list_tokens() == []


async def test_ambiguous_short_id_revokes_nothing(store: Backend) -> None:
    await store.add_token(record("ab" * 32))
    await store.add_token(record("ab" * 31 + "cd"))
    assert await store.revoke_token("abababab") == 0
    assert len(await store.list_tokens()) == 2


async def test_touch_keeps_the_latest_use(store: Backend) -> None:
    await store.add_token(record("aa" * 32))
    await store.touch_tokens({"aa" * 32: (50.0, "10.0.0.1"), "ff" * 32: (50.0, "x")})
    await store.touch_tokens({"aa" * 32: (40.0, "10.0.0.2")})
    found = await store.get_token("aa" * 32)
    assert found is not None and found.last_used == 50.0 and found.last_client == "10.0.0.1"
    await store.touch_tokens({})


async def test_older_files_gain_the_table(tmp_path: Path) -> None:
    from tests.unit.samples import version_1_store

    path = tmp_path / "old.db"
    version_1_store(path)
    store = SqliteStore(path)
    await store.open()
    try:
        await store.add_token(record("aa" * 32))
        assert await store.get_token("aa" * 32) is not None
    finally:
        await store.close()


async def test_older_postgres_databases_gain_the_table(postgres_server: PostgresServer, tmp_path: Path) -> None:
    import asyncpg

    url = postgres_server.create_database()
    first = PostgresUserStore(url)
    await first.open()
    await first.close()
    conn = await asyncpg.connect(url)
    try:
        await conn.execute("DROP TABLE gateway_tokens")  # as a database made before tokens
    finally:
        await conn.close()
    store = PostgresUserStore(url)
    await store.open()
    try:
        await store.add_token(record("aa" * 32))
        assert await store.get_token("aa" * 32) == record("aa" * 32)
    finally:
        await store.close()


async def test_deleting_a_user_revokes_its_tokens(store: Backend) -> None:
    alice = await store.add_user("alice", "h", ("a",), 1.0)
    bob = await store.add_user("bob", "h", ("a",), 1.0)
    await store.add_token(record("aa" * 32, user_id=alice.id))
    await store.add_token(record("bb" * 32, user_id=bob.id))
    await store.delete_user("alice")
    assert [t.digest for t in await store.list_tokens()] == ["bb" * 32]
