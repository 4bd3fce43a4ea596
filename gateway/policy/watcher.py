"""Policy hot reload: watch the policy folder, load changes, keep the last good policy on error.

Polling (every ``interval`` seconds) rather than inotify: it works on every filesystem, in
containers and on network mounts, costs a few stat() calls, and keeps the 2-second promise.
Loading runs in a worker thread so a large policy never stalls requests. The new policy is
published by one reference assignment: a request is decided by one whole policy, never half of two.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable
from pathlib import Path

from gateway.background import BackgroundTask, every
from gateway.policy.loader import PolicyError, load_policy
from gateway.policy.model import Policy

log = logging.getLogger("gateway.policy")

DEFAULT_INTERVAL = 0.5
Fingerprint = tuple[tuple[str, int, int, int], ...]
_UNSEEN = "unseen"  # differs from every fingerprint, None (an unreadable folder) included


def fingerprint(directory: Path) -> Fingerprint | None:
    """What changes when a policy file is edited, added, renamed or removed; None if unreadable."""
    try:
        entries = []
        with os.scandir(directory) as scan:
            for entry in scan:
                if entry.name.endswith(".yaml") and not entry.name.startswith("."):
                    stat = entry.stat()
                    entries.append((entry.name, stat.st_mtime_ns, stat.st_size, stat.st_ino))
    except OSError:
        return None
    return tuple(sorted(entries))


class PolicyWatcher:
    def __init__(
        self,
        directory: Path,
        *,
        case_insensitive: bool,
        on_loaded: Callable[[Policy], None],
        on_failed: Callable[[PolicyError], None],
        interval: float = DEFAULT_INTERVAL,
        compare_first: bool = False,
    ) -> None:
        """``compare_first``: the first check loads the folder whatever its fingerprint, for a caller
        whose policy was loaded a while ago (an edit in between is not missed; a caller that sees
        the same version again does nothing)."""
        self._directory = directory
        self._case_insensitive = case_insensitive
        self._on_loaded = on_loaded
        self._on_failed = on_failed
        self._interval = interval
        self._seen: Fingerprint | str | None = _UNSEEN if compare_first else fingerprint(directory)
        # The watcher must outlive any surprise; the last good policy stays in force meanwhile.
        self._task = BackgroundTask("policy-watcher", every(interval, self.check, log, "policy watcher error"))

    def start(self) -> None:
        self._task.start()

    async def stop(self) -> None:
        await self._task.stop()

    async def check(self) -> bool:
        """Reload if the folder changed; True when a reload was attempted."""
        current = await asyncio.to_thread(fingerprint, self._directory)
        if current == self._seen:
            return False
        self._seen = current
        try:
            policy = await asyncio.to_thread(
                load_policy, self._directory, case_insensitive=self._case_insensitive
            )
        except PolicyError as exc:
            self._on_failed(exc)
        else:
            self._on_loaded(policy)
        return True
