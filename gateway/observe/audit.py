"""The audit trail: one JSON line per security event, in the log and in the store.

``record`` is synchronous and cheap (the log line is written at once, the store row is queued), so
it can sit on the proxy path for every denied request; a background task writes queued rows in
batches. Only what an investigator needs goes in: user names, client addresses, 12-character
session hash prefixes, reasons. Never a password, a cookie or a full session id.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from typing import Any

from gateway.background import BackgroundTask
from gateway.clock import Clock, format_time, system_clock
from gateway.store.base import AuditRecord, AuditStore

log = logging.getLogger("gateway.audit")
AGGREGATE_SECONDS = 60.0  # floods (throttled sign-ins, repeated denials) become one line a minute per source
QUEUE_LIMIT = 10_000  # rows waiting for the store; beyond it the log line still exists, the row is dropped
BATCH = 200


def audit_line(record: AuditRecord) -> str:
    fields: dict[str, Any] = {
        "time": format_time(record.time),
        "event": record.event,
    }
    if record.user is not None:
        fields["user"] = record.user
    if record.client is not None:
        fields["client"] = record.client
    fields.update(json.loads(record.detail))
    return json.dumps(fields, ensure_ascii=True)


class AuditHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes audit lines to standard error (its own class: configured once, however often asked)."""


def configure_audit_log() -> None:
    """Audit lines go to standard error as bare JSON, whatever the format of the other log lines."""
    if not any(isinstance(h, AuditHandler) for h in log.handlers):
        handler = AuditHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(message)s"))
        log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False


class Audit:
    def __init__(self, store: AuditStore, clock: Clock = system_clock) -> None:
        self._store = store
        self._clock = clock
        self._pending: list[AuditRecord] = []
        self._wake = asyncio.Event()
        self._task = BackgroundTask("audit-writer", self._run)
        self.dropped = 0
        self._recent: dict[str, tuple[float, int]] = {}

    def record(self, event: str, *, user: str | None = None, client: str | None = None, **detail: Any) -> None:
        record = AuditRecord(self._clock(), event, user, client or None, json.dumps(detail, ensure_ascii=True))
        log.info("%s", audit_line(record))
        if len(self._pending) >= QUEUE_LIMIT:
            self.dropped += 1
            return
        self._pending.append(record)
        self._wake.set()

    def record_aggregated(
        self, key: str, event: str, *, user: str | None = None, client: str | None = None, **detail: Any
    ) -> None:
        """Like ``record``, but one event per ``key`` a minute; the next one says how many were folded in.

        A flood of cheap requests (throttled sign-ins, denied paths) would otherwise push real events
        out of view and fill the disk; the first of each burst is still recorded at once.
        """
        now = self._clock()
        last, folded = self._recent.get(key, (0.0, 0))
        if now - last < AGGREGATE_SECONDS:
            self._recent[key] = (last, folded + 1)
            return
        if len(self._recent) > QUEUE_LIMIT:  # bound the memory an attacker can make this take
            self._recent = {k: v for k, v in self._recent.items() if now - v[0] < AGGREGATE_SECONDS}
        self._recent[key] = (now, 0)
        self.record(event, user=user, client=client, **({"repeated": folded} if folded else {}), **detail)

    async def flush(self) -> None:
        while self._pending:
            batch = self._pending[:BATCH]
            await self._store.add_audit(batch)
            del self._pending[: len(batch)]  # only once stored: a failed write is retried

    def start(self) -> None:
        self._task.start()

    async def stop(self) -> None:
        await self._task.stop()
        await self.flush()

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            try:
                await self.flush()
            except Exception:  # the store may be briefly locked; keep the rows for the next round
                log.error("%s", json.dumps({"event": "audit.store_error"}))
                await asyncio.sleep(1)
