"""The store contract suite (tests/unit/store_contract.py) with sessions in Redis and users in SQLite
(two backends, as a scaled-out gateway runs them), with the session cache off and on. What only the
Redis store does (replicas, outages, a wiped or lying server) is in test_store_redis_only.py."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from gateway.store import Stores
from gateway.store.redis_sessions import RedisSessionStore
from gateway.store.sqlite import SqliteStore
from tests.servers import RedisServer
from tests.unit.store_contract import *  # noqa: F403  (the suite's tests and its clock fixture)
from tests.unit.store_contract import CACHE_TTL, FakeClock


@pytest.fixture(params=["redis", "redis+cache"])
async def stores(request: pytest.FixtureRequest, tmp_path: Path, clock: FakeClock,
                 redis_server: RedisServer) -> AsyncIterator[Stores]:
    redis_server.flush()
    sessions = RedisSessionStore(redis_server.url(), counter=tmp_path / "sessions-changes")
    cache_ttl = CACHE_TTL if request.param.endswith("+cache") else 0.0
    instance = Stores(SqliteStore(tmp_path / "users.db"), sessions, cache_ttl=cache_ttl, clock=clock)
    await instance.open()
    yield instance
    await instance.close()
