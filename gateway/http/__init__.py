"""What every way in shares, whatever it serves: the request head's checks (target, Host), who the
client is behind trusted proxies, the ASGI types and I/O, the head guard and the one refusal renderer."""

from gateway.http.forwarded import TrustedProxies, client_address, is_trusted, peer_of, public_origin
from gateway.http.headers import (
    REQUEST_ID,
    HeaderList,
    RawHeaders,
    all_values,
    declares_body,
    first_value,
    last_value,
    method_overrides,
)
from gateway.http.host import HostRules, check_forwarded_host, check_host
from gateway.http.io import recording_send
from gateway.http.pages import DEFAULT_PAGES, Pages
from gateway.http.refuse import Refusals, render_error, send_simple, switch_user_url, wants_html
from gateway.http.target import MAX_LOGGED_PATH, MAX_TARGET_BYTES, Targets, is_gateway_page, raw_target
from gateway.http.types import App, Message, Receive, Scope, Send

__all__ = [
    "DEFAULT_PAGES", "MAX_LOGGED_PATH", "MAX_TARGET_BYTES", "REQUEST_ID", "App", "HeaderList", "HostRules", "Message",
    "Pages", "RawHeaders", "Receive", "Refusals", "Scope", "Send", "Targets", "TrustedProxies", "all_values",
    "check_forwarded_host", "check_host", "client_address", "declares_body", "first_value", "is_gateway_page",
    "is_trusted", "last_value", "method_overrides", "peer_of", "public_origin", "raw_target", "recording_send",
    "render_error",
    "send_simple", "switch_user_url", "wants_html",
]
