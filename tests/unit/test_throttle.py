from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from gateway.auth.throttle import ACCOUNT, WINDOW, BackOff, Throttle, attempt_for
from gateway.store.base import ThrottleState
from gateway.store.sqlite import SqliteStore


@pytest.mark.parametrize(("failures", "since_last", "expected"), [
    (0, 0.0, 0.0), (2, 0.0, 0.0), (3, 0.0, 1.0), (4, 0.0, 2.0), (5, 0.5, 3.5), (8, 0.0, 32.0),
    (9, 0.0, 60.0), (50, 0.0, 60.0), (50, 59.0, 1.0), (50, 61.0, 0.0), (99, WINDOW + 1, 0.0),
])
def test_backoff(failures: int, since_last: float, expected: float) -> None:
    state = ThrottleState(failures, 1000.0) if failures else None
    assert ACCOUNT.wait(state, 1000.0 + since_last) == pytest.approx(expected)


def test_account_backoff_admits_fewer_than_100_failures_an_hour() -> None:
    # Simulate the fastest possible attacker: retry the instant each wait ends.
    now, failures, state = 0.0, 0, None
    while now < WINDOW:
        now += ACCOUNT.wait(state, now)
        if now >= WINDOW:
            break
        failures += 1
        state = ThrottleState(failures, now)
    assert failures < 100


class Clock:
    def __init__(self) -> None:
        self.now = 10_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    instance = SqliteStore(tmp_path / "t.db")
    await instance.open()
    yield instance
    await instance.close()


async def test_parallel_guesses_cannot_slip_through(store: SqliteStore) -> None:
    clock = Clock()
    throttle = Throttle(store, clock)
    attempt = attempt_for("alice", "10.0.0.1", None)
    results = await asyncio.gather(*(throttle.reserve(attempt) for _ in range(120)))
    assert sum(1 for wait in results if wait == 0) == ACCOUNT.free
    assert all(wait > 0 for wait in results[ACCOUNT.free:])


async def test_a_correct_password_after_the_wait_works_and_gives_the_reservation_back(store: SqliteStore) -> None:
    clock = Clock()
    throttle = Throttle(store, clock)
    attempt = attempt_for("Alice", "10.0.0.1", None)
    for _ in range(3):
        assert await throttle.reserve(attempt) == 0
    wait = await throttle.reserve(attempt)
    assert wait == pytest.approx(1.0)
    clock.now += wait
    assert await throttle.reserve(attempt) == 0  # the wait is over: this attempt may proceed
    await throttle.succeeded(attempt)
    states = await store.get_throttle(attempt.keys)
    assert states["account:alice"].failures == 3 and "client:10.0.0.1" not in states


async def test_a_known_device_is_not_locked_out_by_attacks_on_the_account(store: SqliteStore) -> None:
    clock = Clock()
    throttle = Throttle(store, clock)
    attacker = attempt_for("alice", "203.0.113.9", None)
    for _ in range(20):
        await throttle.reserve(attacker)
    assert await throttle.reserve(attempt_for("alice", "198.51.100.7", None)) > 0  # the account waits
    assert await throttle.reserve(attempt_for("alice", "198.51.100.7", "device-123")) == 0  # her browser does not


async def test_state_survives_a_restart(tmp_path: Path) -> None:
    clock = Clock()
    attempt = attempt_for("bob", "10.0.0.2", None)
    first = SqliteStore(tmp_path / "r.db")
    await first.open()
    for _ in range(5):
        await Throttle(first, clock).reserve(attempt)
    await first.close()
    second = SqliteStore(tmp_path / "r.db")
    await second.open()
    try:
        assert await Throttle(second, clock).reserve(attempt) > 0
    finally:
        await second.close()


def test_backoff_rules_are_sane() -> None:
    for rule in (ACCOUNT,):
        assert isinstance(rule, BackOff) and rule.cap >= 36  # 3600 / 36 = 100 an hour at most


async def test_known_devices_still_stop_at_the_account_ceiling(store: SqliteStore) -> None:
    clock = Clock()
    throttle = Throttle(store, clock)
    passed = 0
    for device in range(60):  # many stolen device cookies, each with its own small budget
        attempt = attempt_for("alice", "10.0.0.1", f"device-{device}")
        for _ in range(5):
            if await throttle.reserve(attempt) == 0:
                passed += 1
            clock.now += 0.01
    assert passed == 100  # 60 devices x 3 free would be 180: the account ceiling holds
    assert await throttle.reserve(attempt_for("alice", "10.0.0.1", "device-new")) > 0
    clock.now += WINDOW + 1
    assert await throttle.reserve(attempt_for("alice", "10.0.0.1", "device-new")) == 0
