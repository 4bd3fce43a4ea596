"""The long-lived pieces one gateway process shares, gathered in one typed object.

``create_app`` builds it; the Quart pages (web/) reach it through ``current_services()``; the
dispatcher is given the pieces it needs. Nothing here does I/O at import time.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from gateway.auth.accounts import Accounts
from gateway.auth.cookie import SessionCookie
from gateway.auth.csrf import Csrf
from gateway.auth.device import DeviceCookie
from gateway.auth.passwords import Passwords
from gateway.auth.sessions import SessionManager
from gateway.auth.throttle import Throttle
from gateway.auth.verify import PasswordCheck
from gateway.config import Settings
from gateway.http import DEFAULT_PAGES, Pages, TrustedProxies
from gateway.observe import Audit, Metrics
from gateway.policy import Policy
from gateway.store import Stores

__all__ = ["PolicyState", "Services", "current_services"]


@dataclass(frozen=True, slots=True)
class PolicyState:
    """The policy in force and the problems of the last reload (shown by /.gateway/readyz).

    Replaced whole by one attribute assignment, never edited in place, so a request that read it
    once is decided by one whole policy."""

    policy: Policy
    problems: tuple[str, ...] = ()


@dataclass
class Services:
    settings: Settings
    stores: Stores
    passwords: Passwords
    sessions: SessionManager
    accounts: Accounts
    cookie: SessionCookie
    csrf: Csrf
    policy: PolicyState
    audit: Audit
    throttle: Throttle
    device: DeviceCookie
    password_check: PasswordCheck
    metrics: Metrics
    pages: Pages = DEFAULT_PAGES  # create_app builds one from settings.ui
    # Who the client is, behind [server] trusted_proxies (create_app builds it from the settings).
    proxies: TrustedProxies = field(default_factory=TrustedProxies)


def current_services() -> Services:
    from quart import current_app

    services = current_app.extensions["gateway"]
    assert isinstance(services, Services)
    return services
