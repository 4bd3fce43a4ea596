"""The accepted policy as data: its version (a content hash) and the snapshot one process publishes
for the others (see policy/channel.py). Pure: no I/O.

The version hashes the files' names (not their folder: two machines with the same files agree) and
texts, in name order, so it is the same wherever and whenever the same policy is loaded.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import PurePath

__all__ = ["VERSION_LENGTH", "Snapshot", "decode_snapshot", "encode_snapshot", "policy_version"]

VERSION_LENGTH = 16  # hex characters of SHA-256: 64 bits, plenty to tell policies apart at a glance


def policy_version(sources: Mapping[str, str]) -> str:
    """A short, stable hash of ``{file path: text}``: file names (without their folder) and texts."""
    digest = hashlib.sha256()
    for name, text in sorted((PurePath(path).name, text) for path, text in sources.items()):
        for part in (name, text):
            data = part.encode("utf-8", "surrogatepass")
            digest.update(len(data).to_bytes(8, "big"))  # length-prefixed: no two inputs run together
            digest.update(data)
    return digest.hexdigest()[:VERSION_LENGTH]


@dataclass(frozen=True, slots=True)
class Snapshot:
    """What the watching process publishes: the accepted policy's files (``sources``), its version,
    and the problems of the newest edit when it was rejected (the accepted policy stays in force).
    ``serial`` grows with each publication."""

    serial: int
    version: str
    sources: Mapping[str, str] = field(default_factory=dict)
    origin: str = "<policy>"
    case_insensitive: bool = False
    problems: tuple[str, ...] = ()


def encode_snapshot(snapshot: Snapshot) -> bytes:
    return json.dumps({
        "serial": snapshot.serial,
        "version": snapshot.version,
        "origin": snapshot.origin,
        "case_insensitive": snapshot.case_insensitive,
        "problems": list(snapshot.problems),
        "files": dict(snapshot.sources),
    }, ensure_ascii=True, sort_keys=True).encode("ascii")


def decode_snapshot(data: bytes) -> Snapshot:
    """The snapshot ``encode_snapshot`` wrote; ValueError when it is not one."""
    try:
        raw = json.loads(data)
        files = raw["files"]
        problems = raw["problems"]
        snapshot = Snapshot(
            serial=raw["serial"], version=raw["version"], origin=raw["origin"],
            case_insensitive=raw["case_insensitive"], problems=tuple(problems), sources=dict(files),
        )
    except (KeyError, TypeError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"not a policy snapshot: {exc}") from None
    if not (isinstance(snapshot.serial, int) and isinstance(snapshot.version, str)
            and isinstance(snapshot.origin, str) and isinstance(snapshot.case_insensitive, bool)
            and all(isinstance(p, str) for p in snapshot.problems)
            and all(isinstance(k, str) and isinstance(v, str) for k, v in snapshot.sources.items())):
        raise ValueError("not a policy snapshot: wrong types")
    if policy_version(snapshot.sources) != snapshot.version:
        raise ValueError("not a policy snapshot: the version does not match the files")
    return snapshot
