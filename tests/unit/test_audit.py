from __future__ import annotations

import json

import pytest

from gateway.observe.audit import AGGREGATE_SECONDS, Audit, audit_line
from gateway.store.base import AuditRecord


class MemoryStore:
    def __init__(self) -> None:
        self.rows: list[AuditRecord] = []

    async def add_audit(self, records: list[AuditRecord]) -> None:
        self.rows.extend(records)

    async def list_audit(self, *, user: str | None = None, since: float | None = None, limit: int = 1000) -> list[AuditRecord]:
        return self.rows


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


async def test_floods_are_folded_into_one_event_a_minute(caplog: pytest.LogCaptureFixture) -> None:
    store, clock = MemoryStore(), Clock()
    audit = Audit(store, clock)
    for _ in range(500):
        audit.record_aggregated("k", "signin.throttled", user="tom", client="1.2.3.4")
        clock.now += 0.01
    audit.record_aggregated("other", "signin.throttled", user="ann")
    clock.now += AGGREGATE_SECONDS
    audit.record_aggregated("k", "signin.throttled", user="tom", client="1.2.3.4")
    await audit.flush()
    assert [(r.user, json.loads(r.detail).get("repeated")) for r in store.rows] == [("tom", None), ("ann", None), ("tom", 499)]


async def test_lines_are_json_without_secrets() -> None:
    store = MemoryStore()
    audit = Audit(store, Clock())
    audit.record("signin.success", user="tom", client="1.2.3.4", session="abcdef012345", path="/a\u2028b")
    await audit.flush()
    line = audit_line(store.rows[0])
    assert "\u2028" not in line and json.loads(line)["path"] == "/a\u2028b"
    assert json.loads(line)["event"] == "signin.success"
