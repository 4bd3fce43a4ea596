"""One accepted policy per machine: one process decides, every worker enforces exactly its choice.

With several workers, only the supervisor watches the policy folder (policy/watcher.py). It loads
and validates each edit, and publishes the outcome (``Keeper``): the accepted policy's files and
version, and the newest edit's problems when it was rejected. The workers never read the folder
after they start: they follow the ``PolicyChannel``, a private folder (0700) holding

- ``policy.json``: the snapshot (policy/snapshot.py), replaced whole by a rename, and
- ``policy.serial``: the snapshot's serial, an 8-byte counter in shared memory, written after the
  rename. Each worker reads it before admitting every request (one memory read, no system call):
  when it moved, that request waits for the new snapshot to load, so no worker admits anything by
  the old version once the supervisor has published a new one. A timer (``FOLLOW_INTERVAL``) also
  loads it in an idle worker.

Whatever the timing of edits (a good save, then a broken autosave 50 ms later), every worker ends
on the one version the supervisor accepted: there is no second opinion to disagree with. With one
worker, the server process keeps its own ``Keeper`` and no channel is needed.
"""

from __future__ import annotations

import asyncio
import logging
import mmap
import os
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from gateway.background import BackgroundTask, every
from gateway.policy.loader import PolicyError, parse_policy
from gateway.policy.model import Policy
from gateway.policy.snapshot import Snapshot, decode_snapshot, encode_snapshot

__all__ = ["CHANNEL_ENV", "FOLLOW_INTERVAL", "Accepted", "Follower", "Keeper", "PolicyChannel", "policy_of"]

log = logging.getLogger("gateway.policy")

# The channel's folder, named by the supervisor to its workers; outside GATEWAY_*, which are settings.
CHANNEL_ENV = "GW_POLICY_CHANNEL"
FOLLOW_INTERVAL = 0.1  # seconds between a worker's looks at the serial: well inside the 2-second promise
_SERIAL = struct.Struct("<Q")


@dataclass(frozen=True, slots=True)
class Accepted:
    """The policy in force and the problems of the newest edit if it was rejected."""

    policy: Policy
    problems: tuple[str, ...] = ()


class Keeper:
    """The deciding process's record: which policy is accepted, what the newest edit's problems are.
    ``accepted``/``rejected`` return the snapshot to publish, or None when nothing changed (a save
    without a change, the same broken text saved again): no reload to apply, log or audit."""

    def __init__(self, first: Policy, *, origin: str) -> None:
        self.origin = origin
        self.state = Accepted(first)
        self.serial = 1

    def snapshot(self) -> Snapshot:
        policy = self.state.policy
        return Snapshot(serial=self.serial, version=policy.version, sources=policy.sources, origin=self.origin,
                        case_insensitive=policy.case_insensitive, problems=self.state.problems)

    def accepted(self, policy: Policy) -> Snapshot | None:
        if policy.version == self.state.policy.version and not self.state.problems:
            return None
        return self._publish(Accepted(policy))

    def rejected(self, error: PolicyError) -> Snapshot | None:
        problems = tuple(str(p) for p in error.problems)
        if problems == self.state.problems:
            return None
        return self._publish(Accepted(self.state.policy, problems))

    def _publish(self, state: Accepted) -> Snapshot:
        self.state = state
        self.serial += 1
        return self.snapshot()


def policy_of(snapshot: Snapshot) -> Accepted:
    """The published policy, compiled from its files' text (the same file:line messages as a load);
    PolicyError if it does not compile here."""
    policy = parse_policy(snapshot.sources, case_insensitive=snapshot.case_insensitive, origin=snapshot.origin)
    return Accepted(policy, snapshot.problems)


class PolicyChannel:
    """The supervisor writes (``create``, ``publish``); each worker reads (``open``, ``serial``, ``read``)."""

    SNAPSHOT = "policy.json"
    SERIAL = "policy.serial"

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._map: mmap.mmap | None = None

    def create(self, first: Snapshot) -> None:
        """Before the workers start: the first snapshot and its serial."""
        self._write(self.SNAPSHOT, encode_snapshot(first))
        self._write(self.SERIAL, _SERIAL.pack(first.serial))
        self.open(writable=True)

    def publish(self, snapshot: Snapshot) -> None:
        self._write(self.SNAPSHOT, encode_snapshot(snapshot))
        assert self._map is not None, "create() first"
        _SERIAL.pack_into(self._map, 0, snapshot.serial)  # after the rename: a reader sees the new file

    def open(self, *, writable: bool = False) -> None:
        fd = os.open(self.directory / self.SERIAL, (os.O_RDWR if writable else os.O_RDONLY) | os.O_NOFOLLOW)
        try:
            access = mmap.ACCESS_WRITE if writable else mmap.ACCESS_READ
            self._map = mmap.mmap(fd, _SERIAL.size, access=access)
        finally:
            os.close(fd)  # the map keeps its own reference

    def serial(self) -> int:
        assert self._map is not None, "open() first"
        value: int = _SERIAL.unpack_from(self._map, 0)[0]
        return value

    def read(self) -> Snapshot:
        """The published snapshot; ValueError or OSError when it cannot be read."""
        return decode_snapshot((self.directory / self.SNAPSHOT).read_bytes())

    def close(self) -> None:
        if self._map is not None:
            self._map.close()
            self._map = None

    def _write(self, name: str, data: bytes) -> None:
        """Whole or not at all: a reader opens either the old file or the new one."""
        temporary = self.directory / f".{name}.{os.getpid()}.tmp"
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(data)
            os.replace(temporary, self.directory / name)
        except BaseException:
            temporary.unlink(missing_ok=True)
            raise


class Follower:
    """A worker's side: when the serial moves, read the snapshot and hand on the policy in it (compiled
    in a thread, and only when its version is new: a rejected edit only changes the problems)."""

    def __init__(self, channel: PolicyChannel, first: Snapshot, on_change: Callable[[Accepted], None],
                 *, interval: float = FOLLOW_INTERVAL) -> None:
        self._channel = channel
        self._seen = first.serial
        self._current = policy_of(first)
        self._on_change = on_change
        self._interval = interval
        self._lock = asyncio.Lock()  # one load at a time, whoever notices the serial first
        self._failed = -1  # a serial that would not load: requests go on with the policy in force
        # Keep following; the policy in force stays until a snapshot loads.
        self._task = BackgroundTask("policy-follower", every(interval, self.check, log, "cannot load the published policy"))

    @property
    def current(self) -> Accepted:
        return self._current

    def start(self) -> None:
        self._task.start()

    async def stop(self) -> None:
        await self._task.stop()

    def behind(self) -> bool:
        """The supervisor published a snapshot this worker has not taken (one memory read)."""
        serial = self._channel.serial()
        return serial != self._seen and serial != self._failed

    async def catch_up(self) -> None:
        """Before a request is admitted: take the published snapshot now. One that will not load is
        logged once; requests go on with the policy in force, and the timer keeps trying."""
        serial = self._channel.serial()
        try:
            await self.check()
        except Exception:
            self._failed = serial
            log.exception("cannot load the published policy; the one in force stays")

    async def check(self) -> bool:
        """Take the newest snapshot if the serial moved; True when one was taken."""
        async with self._lock:
            return await self._take()

    async def _take(self) -> bool:
        if self._channel.serial() == self._seen:
            return False
        snapshot = await asyncio.to_thread(self._channel.read)
        if snapshot.serial == self._seen:
            return False
        if snapshot.version == self._current.policy.version:
            current = Accepted(self._current.policy, snapshot.problems)
        else:
            current = await asyncio.to_thread(policy_of, snapshot)
        self._seen = snapshot.serial
        self._current = current
        self._on_change(current)
        return True
