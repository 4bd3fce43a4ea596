"""One memory budget for the WebSocket messages that all relays of a process hold at once.

A relay counts a message from the moment it has it until the other leg has taken it: for the app's
leg, until the upstream client's write buffer has drained; for the browser's leg, until the server
has accepted the write (its flow control takes no further write until that one has drained). A
message that would take the total past the limit is not relayed: that socket closes with 1013 (try
again later), and the process does not grow.

What the budget leaves out is bounded per socket by the two libraries' read-ahead (about one message
each way, see gateway/server.py and the relay's client options), so the process holds at most the
budget plus a few messages per open socket.

A plain counter is enough: every relay of a process runs on its one event loop, and neither method
awaits, so nothing can interleave with them.
"""

from __future__ import annotations

from collections.abc import Callable


class MemoryBudget:
    """The size of the messages being relayed: bytes, or characters for text (never more than its
    UTF-8 bytes, so a message within websocket_max_message counts at most that much)."""

    __slots__ = ("_report", "limit", "used")

    def __init__(self, limit: int, report: Callable[[float], None] | None = None) -> None:
        self.limit = limit
        self.used = 0
        self._report = report  # told the new total after each change (a metrics gauge's ``set``)

    def take(self, size: int) -> bool:
        """Count ``size`` more bytes, or refuse (False, nothing counted) if they do not fit."""
        if self.used + size > self.limit:
            return False
        self.used += size
        if self._report is not None:
            self._report(self.used)
        return True

    def give_back(self, size: int) -> None:
        self.used -= size
        if self._report is not None:
            self._report(self.used)
