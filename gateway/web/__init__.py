"""The Quart side: the gateway's own pages (sign-in, sign-out, whoami, sessions, account, status),
their Quart-Auth glue, templates and static files."""

from gateway.web.errors import error_response, register_error_handlers
from gateway.web.status import bp as status_bp
from gateway.web.user import GatewayAuth, auth_config, note_user, request_client
from gateway.web.views import bp as auth_bp

__all__ = ["GatewayAuth", "auth_bp", "auth_config", "error_response", "note_user", "register_error_handlers",
           "request_client", "status_bp"]
