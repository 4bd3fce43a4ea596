"""The store contract suite (tests/unit/store_contract.py) over the scaled-out pair: PostgreSQL users
beside Redis sessions, opened from their URLs exactly as a gateway opens them (``open_stores`` over
the settings, the machine's change counter beside ``store.path``), with the session cache off and
on. Each store alone beside SQLite runs in test_store_postgres.py and test_store_redis.py."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from gateway.config import StoreSettings
from gateway.store import Stores, open_stores
from gateway.store.postgres import PostgresUserStore
from gateway.store.redis_sessions import RedisSessionStore
from tests.servers import PostgresServer, RedisServer
from tests.unit.store_contract import *  # noqa: F403  (the suite's tests and its clock fixture)
from tests.unit.store_contract import CACHE_TTL, FakeClock


@pytest.fixture(params=["pg+redis", "pg+redis+cache"])
async def stores(request: pytest.FixtureRequest, tmp_path: Path, clock: FakeClock,
                 postgres_server: PostgresServer, redis_server: RedisServer) -> AsyncIterator[Stores]:
    redis_server.flush()
    settings = StoreSettings(path=tmp_path / "var" / "gateway.db", users=postgres_server.create_database(),
                             sessions=redis_server.url())
    instance = open_stores(settings, cache_ttl=CACHE_TTL if request.param.endswith("+cache") else 0.0, clock=clock)
    await instance.open()
    yield instance
    await instance.close()


async def test_the_urls_open_the_server_stores(stores: Stores) -> None:
    assert isinstance(stores.users, PostgresUserStore) and isinstance(stores.sessions, RedisSessionStore)
    assert await stores.ping()
