"""create_app(settings): the only place that wires the pieces together."""

from __future__ import annotations

import logging
from pathlib import Path
from urllib.parse import urlsplit

from quart import Quart, Response

from gateway.asgi import Gateway
from gateway.auth.accounts import Accounts
from gateway.auth.cookie import SessionCookie
from gateway.auth.csrf import Csrf
from gateway.auth.device import DeviceCookie
from gateway.auth.gate import Gate
from gateway.auth.identify import Identifier
from gateway.auth.passwords import Passwords
from gateway.auth.sessions import SessionManager
from gateway.auth.throttle import Throttle
from gateway.auth.verify import PasswordCheck
from gateway.clock import Clock, system_clock
from gateway.config import Settings
from gateway.http import HostRules, Pages, Refusals, Targets, TrustedProxies
from gateway.observe import AccessLog, Audit, Metrics
from gateway.policy import Policy, PolicyError, load_policy
from gateway.policy.channel import Accepted, Follower, Keeper, PolicyChannel
from gateway.policy.watcher import PolicyWatcher
from gateway.proxy.handler import ProxyHandler
from gateway.proxy.headers import HeaderRules, transport_security_headers
from gateway.proxy.upstream import Upstream
from gateway.proxy.websocket import WebSocketRelay
from gateway.services import PolicyState, Services
from gateway.store import open_stores
from gateway.web import GatewayAuth, auth_bp, auth_config, register_error_handlers, status_bp

__all__ = ["PolicyReport", "create_app"]

log = logging.getLogger("gateway")

# The gateway's own pages take small forms only; proxied bodies never pass through Quart.
MAX_FORM_BYTES = 64 * 1024


class PolicyReport:
    """Logs, audits and counts a policy reload, in the one process that decided it (the server
    process, or the supervisor of several workers): one edit, one audit line."""

    def __init__(self, audit: Audit, metrics: Metrics) -> None:
        self._audit = audit
        self._metrics = metrics

    def started(self, policy: Policy) -> None:
        log.info("policy version %s: %d rule(s) from %d file(s)", policy.version, len(policy.rules), len(policy.files))
        for warning in policy.warnings:
            log.warning("policy: %s", warning)

    def accepted(self, policy: Policy) -> None:
        self._metrics.policy_reloaded(ok=True)
        log.info("policy reloaded: version %s, %d rule(s) from %d file(s)", policy.version, len(policy.rules),
                 len(policy.files))
        self._audit.record("policy.reloaded", version=policy.version, rules=len(policy.rules), files=len(policy.files))
        for warning in policy.warnings:
            log.warning("policy: %s", warning)

    def rejected(self, error: PolicyError, in_force: Policy) -> None:
        self._metrics.policy_reloaded(ok=False)
        self._audit.record("policy.rejected", version=in_force.version, problems=[str(p) for p in error.problems])
        for problem in error.problems:
            log.error("policy not reloaded, the last good policy (version %s) stays in force: %s", in_force.version,
                      problem)


def create_app(settings: Settings, *, policy: Policy | None = None, clock: Clock = system_clock,
               policy_channel: Path | None = None) -> Gateway:
    """The whole gateway as one ASGI app. ``clock`` is what every time-based rule reads (session
    timeouts, fresh sign-in, throttling, audit times): tests pass a FakeClock instead of sleeping.

    ``policy_channel``: a worker of several follows the policy the supervisor publishes there
    (policy/channel.py) and never reads the policy folder; without it, this process watches the
    folder itself."""
    if settings.server.secret_key is None:
        raise ValueError("create_app needs settings with a secret key")
    secret = settings.server.secret_key
    stores = open_stores(settings.store, cache_ttl=settings.session.cache_ttl)
    passwords = Passwords(settings.passwords)
    audit = Audit(stores.audit, clock)
    channel = PolicyChannel(policy_channel) if policy_channel is not None else None
    follower: Follower | None = None
    if channel is not None:
        channel.open()
        follower = Follower(channel, channel.read(), lambda current: followed(current))
        first = follower.current
    else:
        if policy is None:
            policy = load_policy(settings.policy.dir, case_insensitive=settings.policy.case_insensitive)
        first = Accepted(policy)
    cookie_lifetime = max(settings.session.absolute_timeout, settings.session.persistent_cookie_lifetime)
    proxies = TrustedProxies(settings.server.trusted_proxies, settings.server.public_url)
    throttle = Throttle(stores.throttle, clock)
    device = DeviceCookie(secret, settings.session.device_cookie_name)
    services = Services(
        settings=settings,
        stores=stores,
        passwords=passwords,
        sessions=SessionManager(stores, settings.session, audit, clock),
        accounts=Accounts(stores, passwords, clock),
        cookie=SessionCookie(secret, settings.session.cookie_name, cookie_lifetime),
        csrf=Csrf(secret),
        policy=PolicyState(policy=first.policy, problems=first.problems),
        audit=audit,
        throttle=throttle,
        device=device,
        password_check=PasswordCheck(throttle, passwords, device),
        pages=Pages(settings.ui),
        metrics=Metrics(),
        proxies=proxies,
    )

    app = Quart("gateway", static_folder="web/static", static_url_path="/.gateway/static")
    app.secret_key = secret
    app.config.update(
        MAX_CONTENT_LENGTH=MAX_FORM_BYTES,
        PROVIDE_AUTOMATIC_OPTIONS=False,
        # Quart-Auth's duration is the Max-Age of a "keep me signed in" cookie; without the box the
        # cookie has no Max-Age and ends with the browser. The server-side limits apply either way.
        **auth_config(settings.session.cookie_name, settings.session.secure_cookie,
                      settings.session.persistent_cookie_lifetime),
    )
    app.extensions["gateway"] = services
    GatewayAuth(app)
    app.register_blueprint(auth_bp)
    app.register_blueprint(status_bp)
    register_error_handlers(app)

    rules = HeaderRules(
        user_header=settings.headers.user.encode(),
        roles_header=settings.headers.roles.encode(),
        cookie_names=frozenset(name.encode() for name in settings.session.cookie_names),
        upstream_host=urlsplit(settings.upstream.url).netloc.encode(),
        preserve_host=settings.upstream.preserve_host,
        trusted_proxies=settings.server.trusted_proxies,
        response_headers=transport_security_headers(settings.server),
        strip_headers=tuple(name.encode() for name in settings.proxy.strip_headers),
    )
    refusals = Refusals(services.pages, rules.response_headers)
    gate = Gate(Identifier(services.cookie, services.sessions), lambda: services.policy.policy, audit, proxies,
                secure_cookie=settings.session.secure_cookie, clock=clock, follower=follower)
    proxy = ProxyHandler(settings.server, rules, proxies, services.metrics,
                         max_connections_per_client=settings.upstream.max_connections_per_client)
    targets = Targets(allow_params=settings.policy.allow_path_params, case_insensitive=settings.policy.case_insensitive,
                      hosts=HostRules.from_settings(settings.server.hosts, settings.server.public_url), proxies=proxies)
    access = AccessLog(services.metrics, enabled=settings.log.access, text=settings.log.format == "text")
    gateway = Gateway(app, targets=targets, gate=gate, proxy=proxy,
                      websockets=WebSocketRelay(settings.upstream, rules, services.metrics, refusals),
                      refusals=refusals, proxies=proxies, access=access, max_body_size=settings.server.max_body_size)

    report = PolicyReport(audit, services.metrics)
    keeper = Keeper(first.policy, origin=str(settings.policy.dir))

    def policy_loaded(new: Policy) -> None:
        if keeper.accepted(new) is not None:
            services.policy = PolicyState(policy=new)
            report.accepted(new)

    def policy_failed(error: PolicyError) -> None:
        if keeper.rejected(error) is not None:
            services.policy = PolicyState(policy=keeper.state.policy, problems=keeper.state.problems)
            report.rejected(error, keeper.state.policy)

    def followed(current: Accepted) -> None:
        services.policy = PolicyState(policy=current.policy, problems=current.problems)
        services.metrics.policy_state(ok=not current.problems)

    watcher = None if follower is not None else PolicyWatcher(
        settings.policy.dir, case_insensitive=settings.policy.case_insensitive,
        on_loaded=policy_loaded, on_failed=policy_failed)
    if follower is not None:
        services.metrics.policy_state(ok=not first.problems)

    @app.before_serving
    async def open_resources() -> None:
        await stores.open()
        audit.start()
        services.sessions.idle_clock.start()
        await services.sessions.purge_expired()
        await passwords.prepare()
        proxy.upstream = Upstream(settings.upstream)
        for warning in settings.warnings:
            log.warning("%s", warning)
        if watcher is not None:
            report.started(first.policy)
            watcher.start()
        if follower is not None:
            follower.start()

    @app.after_serving
    async def close_resources() -> None:
        if watcher is not None:
            await watcher.stop()
        if follower is not None:
            await follower.stop()
        if channel is not None:
            channel.close()
        if proxy.upstream is not None:
            await proxy.upstream.aclose()
        await services.sessions.idle_clock.stop()
        await audit.stop()
        await stores.close()
        services.metrics.close()
        access.flush()

    every_page = [(name.decode(), value.decode()) for name, value in (*services.pages.headers, *rules.response_headers)]

    @app.after_request
    async def page_headers(response: Response) -> Response:
        for name, value in every_page:
            response.headers.setdefault(name, value)
        return response

    return gateway
