"""Where log lines go and how they look: standard error, one line each, JSON or text ([log] format).

Three kinds of line share standard error: the ordinary log (``gateway.*``, Uvicorn; at [log] level),
the access log (``gateway.access``, one line per request whenever [log] access is on, whatever the
level) and the audit trail (``gateway.audit``, always JSON, see observe/audit.py).
"""

from __future__ import annotations

import json
import logging
import sys

from gateway.clock import format_time
from gateway.config import Settings
from gateway.observe.audit import configure_audit_log

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
ACCESS_LOGGER = "gateway.access"


class JsonFormatter(logging.Formatter):
    """An ordinary log line as one JSON object: time, level, logger, message (and the traceback)."""

    def format(self, record: logging.LogRecord) -> str:
        fields: dict[str, object] = {
            "time": format_time(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            fields["exception"] = self.formatException(record.exc_info)
        return json.dumps(fields, ensure_ascii=True)


class AccessHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes access lines to standard error (its own class: configured once, however often asked)."""


def _configure_access_log(enabled: bool) -> None:
    """Access lines are written as they come (already JSON or text): their own handler, no propagation."""
    log = logging.getLogger(ACCESS_LOGGER)
    if not any(isinstance(h, AccessHandler) for h in log.handlers):
        handler = AccessHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(message)s"))
        log.addHandler(handler)
    log.setLevel(logging.INFO if enabled else logging.CRITICAL + 1)
    log.propagate = False


def configure_logging(settings: Settings) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if settings.log.format == "json" else logging.Formatter(TEXT_FORMAT))
    logging.basicConfig(level=settings.log.level.upper(), handlers=[handler])
    configure_audit_log()
    _configure_access_log(settings.log.access)
