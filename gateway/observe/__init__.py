"""What the gateway tells its operators: the access log, the metrics, the log lines and the audit trail."""

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
