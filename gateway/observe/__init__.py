"""What the gateway tells its operators: the access log, the metrics, the log lines and the audit trail.

The names below load on first use: a CLI command that only records audit events does not import the
metrics (prometheus_client) and the access log.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gateway.observe.access import AccessLog, Exchange, request_id
    from gateway.observe.audit import Audit, audit_line, configure_audit_log
    from gateway.observe.logs import configure_logging
    from gateway.observe.metrics import (
        ALLOW,
        BAD_REQUEST,
        DENY,
        ERROR,
        GATEWAY_PAGE,
        LOGIN,
        REAUTH,
        Metrics,
        shared_metrics_dir,
    )

__all__ = [
    "ALLOW", "BAD_REQUEST", "DENY", "ERROR", "GATEWAY_PAGE", "LOGIN", "REAUTH", "AccessLog", "Audit", "Exchange",
    "Metrics", "audit_line", "configure_audit_log", "configure_logging", "request_id", "shared_metrics_dir",
]

_HOME = {
    **dict.fromkeys(("AccessLog", "Exchange", "request_id"), "access"),
    **dict.fromkeys(("Audit", "audit_line", "configure_audit_log"), "audit"),
    "configure_logging": "logs",
    **dict.fromkeys(("ALLOW", "BAD_REQUEST", "DENY", "ERROR", "GATEWAY_PAGE", "LOGIN", "REAUTH", "Metrics",
                     "shared_metrics_dir"), "metrics"),
}


def __getattr__(name: str) -> Any:
    if name not in _HOME:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"gateway.observe.{_HOME[name]}"), name)
