"""auth/factors.py over a real (SQLite) store: enrolment, codes accepted once, recovery codes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from gateway.auth import totp
from gateway.auth.factors import Factors, secret_of
from gateway.clock import FakeClock
from gateway.store import Stores, User
from gateway.store.sqlite import SqliteStore

SECRET = b"k" * 32


@pytest.fixture
async def stores(tmp_path: Path) -> AsyncIterator[Stores]:
    store = SqliteStore(tmp_path / "s.db")
    instance = Stores(store, store)
    await instance.open()
    yield instance
    await instance.close()


async def test_enrol_then_codes_pass_once(stores: Stores) -> None:
    clock = FakeClock(1_700_000_000.0)
    factors = Factors(stores, SECRET, clock)
    user: User = await stores.users.add_user("alice", "h", (), 1.0)
    assert not await factors.has_factor(user)
    key = totp.new_secret()
    now_code = totp.code_at(key, totp.step_of(clock()))
    assert await factors.enrol_totp(user, "phone", key, "000000" if now_code != "000000" else "111111") is None
    factor = await factors.enrol_totp(user, "phone", key, now_code)
    assert factor is not None and secret_of(factor) == key and await factors.has_factor(user)
    assert await factors.verify(user, now_code) is None  # the enrolment's code is spent
    clock.advance(30)
    later = totp.code_at(key, totp.step_of(clock()))
    assert await factors.verify(user, later) == "totp"
    assert await factors.verify(user, later) is None
    assert await factors.verify(user, "not a code") is None


async def test_recovery_codes_pass_once_and_regenerating_voids_them(stores: Stores) -> None:
    factors = Factors(stores, SECRET, FakeClock(1_700_000_000.0))
    user = await stores.users.add_user("alice", "h", (), 1.0)
    codes = await factors.new_recovery_codes(user)
    assert len(codes) == 10
    assert await factors.verify(user, codes[0].upper()) == "recovery"
    assert await factors.verify(user, codes[0]) is None
    fresh = await factors.new_recovery_codes(user)
    assert await factors.verify(user, codes[1]) is None
    assert await factors.verify(user, fresh[1]) == "recovery"
    other = Factors(stores, b"another secret", FakeClock(1_700_000_000.0))
    assert await other.verify(user, fresh[2]) is None  # digests are keyed by the server secret
