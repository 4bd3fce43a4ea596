"""Per-client admission to the upstream pool: how many upstream requests one client address may
have in flight at once in this worker (as nginx's limit_conn). A client that is slow to read its
answers, or keeps many requests open, can then take only its share of the pool, never all of it."""

from __future__ import annotations


class ClientSlots:
    def __init__(self, limit: int) -> None:
        self._limit = limit  # 0: no limit
        self._held: dict[str, int] = {}

    def acquire(self, client: str) -> bool:
        if not self._limit:
            return True
        held = self._held.get(client, 0)
        if held >= self._limit:
            return False
        self._held[client] = held + 1
        return True

    def release(self, client: str) -> None:
        if not self._limit:
            return
        held = self._held.get(client, 0) - 1
        if held > 0:
            self._held[client] = held
        else:
            self._held.pop(client, None)

    def held(self, client: str) -> int:
        return self._held.get(client, 0)
