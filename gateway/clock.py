"""Time, in one place: the clock the stateful parts are given, and the one shape a time is written in.

Stateful parts (sessions, throttling, the stores' expiry) take a ``Clock`` instead of calling
``time.time`` themselves, so tests move time forward instead of sleeping. Every log line, audit
line and machine-readable timestamp is written by ``format_time``: ``2025-01-31T12:00:00.123Z``.
"""

from __future__ import annotations

import time
from collections.abc import Callable

__all__ = ["Clock", "FakeClock", "format_human_time", "format_time", "system_clock"]

Clock = Callable[[], float]
"""Seconds since the epoch, as ``time.time`` returns them."""

system_clock: Clock = time.time

# The last second formatted: strftime once a second, not once a line (the access log's hot path).
_second: list[tuple[int, str]] = [(-1, "")]


def format_time(timestamp: float) -> str:
    """The one timestamp shape of every log: UTC, milliseconds, ``Z``."""
    seconds = int(timestamp)
    last, text = _second[0]
    if seconds != last:
        text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
        _second[0] = (seconds, text)
    return f"{text}.{int((timestamp - seconds) * 1000):03d}Z"


def format_human_time(timestamp: float, *, seconds: bool = False) -> str:
    """The shape people read in pages and the CLI's tables: ``2025-01-31 12:00 UTC`` (or ``12:00:00``)."""
    return time.strftime("%Y-%m-%d %H:%M:%S UTC" if seconds else "%Y-%m-%d %H:%M UTC", time.gmtime(timestamp))


class FakeClock:
    """A clock that moves only when told to: ``clock.advance(31 * 60)`` instead of a sleep."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds
