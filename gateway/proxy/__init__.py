"""Forwarding only: header rewrite rules (pure), body framing and pacing, the upstream and its
transports, streaming, and the WebSocket relay. Never decides who the user is (no auth import)."""

from gateway.proxy.errors import UpstreamError
from gateway.proxy.handler import ProxyHandler
from gateway.proxy.headers import HeaderRules, transport_security_headers
from gateway.proxy.transport import Transport, UpstreamResponse
from gateway.proxy.upstream import Upstream
from gateway.proxy.websocket import Admitted, WebSocketRelay

__all__ = ["Admitted", "HeaderRules", "ProxyHandler", "Transport", "Upstream", "UpstreamError", "UpstreamResponse",
           "WebSocketRelay", "transport_security_headers"]
