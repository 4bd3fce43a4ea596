"""The WebSocket relays' shared memory budget: a counter that refuses what does not fit."""

from __future__ import annotations

from gateway.proxy.memory import MemoryBudget


def test_takes_what_fits_refuses_the_rest_and_reports_each_change() -> None:
    reported: list[float] = []
    budget = MemoryBudget(100, reported.append)
    assert budget.take(60) and budget.take(40)  # exactly full is allowed
    assert not budget.take(1)  # refused: nothing counted, nothing reported
    assert budget.used == 100
    budget.give_back(60)
    assert not budget.take(61) and budget.take(60)
    budget.give_back(60)
    budget.give_back(40)
    assert budget.used == 0
    assert reported == [60, 100, 40, 100, 40, 0]


def test_an_empty_message_always_fits_and_no_reporter_is_needed() -> None:
    budget = MemoryBudget(10)
    assert budget.take(10) and budget.take(0)
    assert not budget.take(1)
