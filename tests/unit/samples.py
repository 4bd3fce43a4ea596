"""Sample values shared by the unit tests of the header rules and the WebSocket relay."""

from __future__ import annotations

import ipaddress

from gateway.policy import Principal
from gateway.proxy.headers import HeaderRules

RULES = HeaderRules(
    user_header=b"X-Forwarded-User",
    roles_header=b"X-Forwarded-Roles",
    cookie_names=frozenset({b"gateway_session", b"gateway_csrf"}),
    upstream_host=b"127.0.0.1:8081",
    preserve_host=False,
    trusted_proxies=(ipaddress.ip_network("10.0.0.0/8"),),
)
ALICE = Principal(user="alice", roles=frozenset({"staff", "admin"}), auth_time=0.0)
