"""Human durations ("90s", "15m", "12h", "1h30m", "7d") as seconds.

Shared by the config and the policy loader so both accept exactly the same spelling.
"""

from __future__ import annotations

import re

_UNITS: dict[str, int] = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_DURATION = re.compile(r"(?:\d+[smhd])+")
_PART = re.compile(r"(\d+)([smhd])")


def parse_duration(text: str) -> int:
    """Return the number of seconds in ``text``; raise ValueError with a readable reason."""
    if not isinstance(text, str):
        raise ValueError(f"expected a duration such as \"15m\", got {text!r}")
    cleaned = text.strip().lower()
    if not _DURATION.fullmatch(cleaned):
        raise ValueError(f"expected a duration such as \"90s\", \"15m\", \"12h\" or \"1h30m\", got {text!r}")
    seconds = sum(int(n) * _UNITS[unit] for n, unit in _PART.findall(cleaned))
    if seconds <= 0:
        raise ValueError(f"a duration must be longer than zero, got {text!r}")
    return seconds
