"""Where log lines go and how they look: standard error, one line each, JSON or text ([log] format).

Three kinds of line share standard error: the ordinary log (``gateway.*``, Uvicorn; at [log] level),
the access log (``gateway.access``, one line per request whenever [log] access is on, whatever the
level) and the audit trail (``gateway.audit``, always JSON, see gateway/audit.py).
"""

from __future__ import annotations

import json
import logging
import sys
import time

from gateway.audit import configure_audit_log
from gateway.config import Settings

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
ACCESS_LOGGER = "gateway.access"


class JsonFormatter(logging.Formatter):
    """An ordinary log line as one JSON object: time, level, logger, message (and the traceback)."""

    def format(self, record: logging.LogRecord) -> str:
        fields: dict[str, object] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            fields["exception"] = self.formatException(record.exc_info)
        return json.dumps(fields, ensure_ascii=True)


def _configure_access_log(enabled: bool) -> None:
    """Access lines are written as they come (already JSON or text): their own handler, no propagation."""
    log = logging.getLogger(ACCESS_LOGGER)
    if not any(getattr(h, "_gateway_access", False) for h in log.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(message)s"))
        handler._gateway_access = True  # type: ignore[attr-defined]
        log.addHandler(handler)
    log.setLevel(logging.INFO if enabled else logging.CRITICAL + 1)
    log.propagate = False


def configure_logging(settings: Settings) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if settings.log.format == "json" else logging.Formatter(TEXT_FORMAT))
    logging.basicConfig(level=settings.log.level.upper(), handlers=[handler])
    configure_audit_log()
    _configure_access_log(settings.log.access)
