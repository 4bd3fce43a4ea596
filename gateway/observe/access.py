"""One access-log line per request, and the request id that ties it to the app's own logs.

Every request (proxied, WebSocket handshake, gateway page) carries one small ``Exchange`` record,
filled in as the request goes; when it ends ``AccessLog.finish`` counts it in the metrics and writes
one line to the ``gateway.access`` logger (standard error), JSON or text as ``[log] format`` says.

What a line holds: time, request id, client address, user, method, the canonical path, decision,
status, how the response ended, bytes sent, upstream time and total time. Never the query string (it may carry tokens),
never a cookie, a password or a session id.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import re
import time
from collections.abc import Callable

from gateway.clock import format_time
from gateway.observe.metrics import Metrics

log = logging.getLogger("gateway.access")

# A client's (or a proxy in front's) id is kept when it is a plain token, so one id follows the
# request through every hop; anything else is replaced, never passed on.
SANE_REQUEST_ID = re.compile(rb"[A-Za-z0-9._-]{1,128}")


# An id is no secret, so it comes from a PRNG seeded from the OS at start rather than from the
# OS per request (a system call each). Worker processes are spawned, so each seeds its own.
_random = random.Random()


def request_id(given: bytes | None) -> bytes:
    """The client's X-Request-ID when it is a sane token, else a new random one (16 hex digits)."""
    if given is not None and SANE_REQUEST_ID.fullmatch(given):
        return given
    return b"%016x" % _random.getrandbits(64)


class Exchange:
    """What the access line says about one request, filled in as it goes."""

    __slots__ = ("bytes", "client", "decision", "ended", "method", "path", "request_id", "started", "status",
                 "upstream", "user")

    def __init__(self, request_id: bytes, method: str, client: str) -> None:
        self.started = time.perf_counter()
        self.request_id = request_id
        self.method = method
        self.client = client
        self.path: str | None = None
        self.user: str | None = None
        self.decision = "error"  # until something decides
        self.status = 0  # 0: no answer was sent (the client went away first)
        self.bytes = 0  # body bytes sent to the client
        self.upstream: float | None = None  # seconds until the upstream's response head
        # "complete", or why the answer was cut after its head went out: "client_closed",
        # "client_timeout" (server.send_timeout), "upstream_timeout" (upstream.read_timeout) or
        # "upstream_error". A status alone cannot tell:
        # a 200 whose body stopped half way is still logged as 200.
        self.ended = "complete"


# Made once (json.dumps with any argument builds a new encoder per call); the same shape as the
# audit and ordinary JSON lines, so one parser reads them all.
_json_line = json.JSONEncoder(ensure_ascii=True).encode


def _text_line(fields: dict[str, object]) -> str:
    # Strings an attacker chooses (path, user, method) are written JSON-quoted: no forged lines.
    def show(value: object) -> str:
        if value is None:
            return "-"
        return json.dumps(value, ensure_ascii=True) if isinstance(value, str) else str(value)

    return " ".join(f"{name}={show(value)}" for name, value in fields.items())


# Lines wait at most this long (or until this many are waiting) and go to the logger together.
FLUSH_DELAY = 0.05
FLUSH_LINES = 256


class AccessLog:
    """Counts each finished request and writes its line.

    Lines are buffered briefly and handed to the logger joined, one record per batch (still one
    line per request), as nginx's ``access_log ... buffer= flush=`` does: a logging record per
    request costs as much CPU as the rest of the proxied request's Python (bench/proxy_bench.py).
    A line waits at most FLUSH_DELAY; ``flush`` empties the buffer at shutdown."""

    def __init__(self, metrics: Metrics, *, enabled: bool, text: bool) -> None:
        self._metrics = metrics
        self._enabled = enabled
        self._line: Callable[[dict[str, object]], str] = _text_line if text else _json_line
        self._pending: list[str] = []

    def finish(self, exchange: Exchange) -> None:
        self._metrics.count_request(exchange.decision, exchange.status)
        if exchange.ended != "complete":
            self._metrics.aborted[exchange.ended].inc()
        if not self._enabled:
            return
        upstream = exchange.upstream
        # Durations in seconds, to the microsecond.
        self._pending.append(self._line({
            "time": format_time(time.time()),
            "request_id": exchange.request_id.decode("ascii"),
            "client": exchange.client,
            "user": exchange.user,
            "method": exchange.method,
            "path": exchange.path,
            "decision": exchange.decision,
            "status": exchange.status,
            "ended": exchange.ended,
            "bytes": exchange.bytes,
            "upstream_s": None if upstream is None else round(upstream, 6),
            "total_s": round(time.perf_counter() - exchange.started, 6),
        }))
        waiting = len(self._pending)
        if waiting == 1:
            try:
                asyncio.get_running_loop().call_later(FLUSH_DELAY, self.flush)
            except RuntimeError:  # no event loop (a direct call): write it now
                self.flush()
        elif waiting >= FLUSH_LINES:
            self.flush()

    def flush(self) -> None:
        if self._pending:
            lines, self._pending = self._pending, []
            log.info("%s", "\n".join(lines))
