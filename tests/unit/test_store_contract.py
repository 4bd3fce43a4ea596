"""The store contract suite (tests/unit/store_contract.py) against SQLite: one file for users and
sessions (the default), and users and sessions in two files (two backends, as PostgreSQL users
beside Redis sessions will be), each with the session cache off and on. The SQLite-only tests
are in test_store_sqlite.py."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from gateway.config import StoreSettings
from gateway.store import Stores, open_stores
from gateway.store.stores import sqlite_url
from tests.unit.store_contract import *  # noqa: F403  (the suite's tests and its clock fixture)
from tests.unit.store_contract import CACHE_TTL, FakeClock


def Urls(users: Path, sessions: Path) -> StoreSettings:
    return StoreSettings(path=users, users=sqlite_url(users), sessions=sqlite_url(sessions))


FACTORIES: dict[str, Callable[[Path, FakeClock], Stores]] = {
    "sqlite": lambda tmp, _: open_stores(Urls(tmp / "var" / "test.db", tmp / "var" / "test.db")),
    # The serving gateway's configuration: the whole contract must hold with the session cache on.
    "sqlite+cache": lambda tmp, clock: open_stores(Urls(tmp / "var" / "test.db", tmp / "var" / "test.db"),
                                                   cache_ttl=CACHE_TTL, clock=clock),
    "sqlite-split+cache": lambda tmp, clock: open_stores(Urls(tmp / "users.db", tmp / "sessions.db"),
                                                         cache_ttl=CACHE_TTL, clock=clock),
    "sqlite-split": lambda tmp, _: open_stores(Urls(tmp / "users.db", tmp / "sessions.db")),
}


@pytest.fixture(params=sorted(FACTORIES))
async def stores(request: pytest.FixtureRequest, tmp_path: Path, clock: FakeClock) -> AsyncIterator[Stores]:
    instance = FACTORIES[request.param](tmp_path, clock)
    await instance.open()
    yield instance
    await instance.close()
